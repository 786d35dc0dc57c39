// Scenario 5 of issue 6: the API server itself refuses invalid RelayPolicies and
// SmtpUsers (the CRDs' OpenAPI schema and CEL rules, installed by helm), and kubectl
// shows a message a person can act on. No operator is needed for that.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { NAMESPACE, type SluiceCluster, startSluiceCluster } from './sluice-cluster.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

function relayPolicy(name: string, spec: Record<string, unknown>): object {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata: { name, namespace: NAMESPACE },
    spec: { hostname: 'relay.example.net', ...spec },
  };
}

function smtpUser(name: string, spec: Record<string, unknown>): object {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'SmtpUser',
    metadata: { name, namespace: NAMESPACE },
    spec: { username: name, passwordSecretRef: { name: `${name}-password` }, ...spec },
  };
}

describe('the API server refuses invalid resources', { timeout: 300_000 }, () => {
  let c: SluiceCluster;

  before(async () => {
    if (!skip) c = await startSluiceCluster({ users: [], apiOnly: true });
  });
  after(async () => {
    await c?.stop();
  });

  /** kubectl apply's error output for the object (it must fail). */
  async function refused(object: object): Promise<string> {
    try {
      await c.apply(object);
    } catch (err: unknown) {
      return (err as Error).message;
    }
    assert.fail(`kubectl apply accepted ${JSON.stringify(object)}`);
  }

  it('autoscaling with minReplicas > maxReplicas (CEL rule)', { skip }, async () => {
    const message = await refused(
      relayPolicy('bad-autoscaling', { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }),
    );
    assert.match(message, /The RelayPolicy "bad-autoscaling" is invalid/);
    assert.match(message, /spec\.autoscaling: Invalid value: minReplicas must not exceed maxReplicas/);
  });

  it('a recipientOverflow that is not reject or truncate (enum)', { skip }, async () => {
    const message = await refused(relayPolicy('bad-overflow', { limits: { recipientOverflow: 'drop' } }));
    assert.match(message, /The RelayPolicy "bad-overflow" is invalid/);
    assert.match(
      message,
      /spec\.limits\.recipientOverflow: Unsupported value: "drop": supported values: "reject", "truncate"/,
    );
  });

  it('an SmtpUser without policyRef (required field)', { skip }, async () => {
    const message = await refused(smtpUser('no-policy', {}));
    assert.match(message, /The SmtpUser "no-policy" is invalid/);
    assert.match(message, /spec\.policyRef: Required value/);
  });

  it('a message size below the minimum and a field that does not exist', { skip }, async () => {
    const tooSmall = await refused(relayPolicy('bad-size', { limits: { maxMessageBytes: 10 } }));
    assert.match(
      tooSmall,
      /spec\.limits\.maxMessageBytes: Invalid value: 10: spec\.limits\.maxMessageBytes in body should be greater than or equal to 1024/,
    );
    const unknown = await refused(relayPolicy('bad-field', { maxRecipients: 30 }));
    assert.match(unknown, /unknown field "spec\.maxRecipients"/);
  });

  it('a postmaster that is not an ASCII address (pattern, read by Go regular expressions)', {
    skip,
  }, async () => {
    const message = await refused(relayPolicy('bad-postmaster', { postmaster: 'jörg@example.net' }));
    assert.match(message, /The RelayPolicy "bad-postmaster" is invalid/);
    assert.match(
      message,
      /spec\.postmaster: Invalid value: "jörg@example\.net": spec\.postmaster in body should match/,
    );
    const noDomain = await refused(relayPolicy('bad-postmaster', { postmaster: 'postmaster' }));
    assert.match(noDomain, /spec\.postmaster: Invalid value: "postmaster"/);
  });

  it('a timeout beyond what the relay can wait for (maximum, as the relay checks it)', { skip }, async () => {
    const message = await refused(
      relayPolicy('bad-timeout', {
        delivery: { connectTimeoutSeconds: 3_000_000 },
        drainDeadlineSeconds: 3_000_000,
      }),
    );
    assert.match(
      message,
      /spec\.delivery\.connectTimeoutSeconds: Invalid value: 3000000: spec\.delivery\.connectTimeoutSeconds in body should be less than or equal to 600/,
    );
    assert.match(
      message,
      /spec\.drainDeadlineSeconds: Invalid value: 3000000: spec\.drainDeadlineSeconds in body should be less than or equal to 86400/,
    );
  });

  it('workers that are neither auto nor a number from 1 to 256', { skip }, async () => {
    const word = await refused(relayPolicy('bad-workers', { workers: 'many' }));
    assert.match(word, /spec\.workers: Invalid value: "many": spec\.workers in body should match '\^auto\$'/);
    const zero = await refused(relayPolicy('bad-workers', { workers: 0 }));
    assert.match(
      zero,
      /spec\.workers: Invalid value: 0: spec\.workers in body should be greater than or equal to 1/,
    );
  });

  it('stores nothing that was refused, and accepts a valid policy with its defaults', { skip }, async () => {
    assert.equal(
      (await c.kubectl(['get', 'relaypolicies,smtpusers', '-n', NAMESPACE, '-o', 'name'])).stdout,
      '',
    );
    await c.apply(
      relayPolicy('good', { postmaster: 'noc+relay@example.net', spool: { reserveMegabytes: 100 } }),
    );
    const { stdout } = await c.kubectl(['get', 'relaypolicy', 'good', '-n', NAMESPACE, '-o', 'json']);
    const spec = (
      JSON.parse(stdout) as {
        spec: {
          replicas: number;
          limits: { maxRecipients: number };
          postmaster: string;
          spool: { size: string; reserveMegabytes: number };
          workers: number | string;
        };
      }
    ).spec;
    assert.equal(spec.replicas, 2);
    assert.equal(spec.limits.maxRecipients, 30);
    assert.equal(spec.postmaster, 'noc+relay@example.net');
    assert.deepEqual(spec.spool, { size: '10Gi', reserveMegabytes: 100 });
    assert.equal(spec.workers, 1);
    await c.apply(relayPolicy('auto-workers', { workers: 'auto' }));
    await c.apply(relayPolicy('four-workers', { workers: 4 }));
    await c.kubectl(['delete', 'relaypolicy', 'auto-workers', 'four-workers', '-n', NAMESPACE]);
  });
});
