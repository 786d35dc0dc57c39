// Issue 20 on the whole system: a SendingDomain applied with kubectl shows the records to
// publish and its conditions in `kubectl get`; once the loopback DNS server serves them,
// the relay pod signs the customer's mail and the message at the sink verifies (mailauth,
// against the same DNS). No kubelet runs here: kubelet-shim.ts runs the relay pods.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, it } from 'node:test';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { kubectlTables, row } from './kubectl-table.ts';
import {
  DOMAIN,
  NAMESPACE,
  type SluiceCluster,
  startSluiceCluster,
  type TestUser,
} from './sluice-cluster.ts';
import { mailer } from './smtp-clients.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

const alice: TestUser = { name: 'alice', username: 'alice', password: 'alice-e2e-Pa55word' };
const COLUMNS = ['DOMAIN', 'SELECTOR', 'DKIM', 'SPF', 'DMARC', 'READY'];

interface Records {
  status?: { records?: Array<{ purpose: string; type: string; name: string; value: string }> };
}

describe('a SendingDomain applied with kubectl', { timeout: 400_000 }, () => {
  let c: SluiceCluster;

  before(async () => {
    if (!skip) c = await startSluiceCluster({ users: [alice], spec: { replicas: 1 } });
  });
  after(async () => {
    await c?.stop();
  });

  const columns = async () => {
    const { stdout } = await c.kubectl(['get', 'sendingdomains', '-n', NAMESPACE]);
    const [table] = kubectlTables(stdout);
    return row(table, 'shop', COLUMNS);
  };

  it('shows its records and conditions, and the relay signs mail once DNS serves the key', {
    skip,
  }, async () => {
    await c.waitReady(1);
    await c.apply({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name: 'shop', namespace: NAMESPACE },
      spec: { domain: 'shop.example', policyRef: { name: 'relay' }, users: ['alice'] },
    });
    assert.deepEqual(
      await waitFor(
        'the records and conditions in kubectl get',
        async () => {
          const r = await columns();
          return r?.DKIM ? r : undefined;
        },
        { timeoutMs: 30_000 },
      ),
      { DOMAIN: 'shop.example', SELECTOR: '', DKIM: 'False', SPF: 'False', DMARC: 'Missing', READY: 'False' },
    );
    const { stdout } = await c.kubectl(['get', 'sendingdomain', 'shop', '-n', NAMESPACE, '-o', 'json']);
    const records = (JSON.parse(stdout) as Records).status?.records ?? [];
    assert.deepEqual(
      records.map((r) => [r.purpose, r.type, r.name]),
      [
        ['DKIM', 'TXT', 'sluice1._domainkey.shop.example'],
        ['SPF', 'TXT', 'shop.example'],
        ['DMARC', 'TXT', '_dmarc.shop.example'],
      ],
    );
    // the customer publishes what status says, with a stricter DMARC policy
    for (const r of records) {
      c.dns.setTxt(r.name, [r.purpose === 'DMARC' ? 'v=DMARC1; p=quarantine' : r.value]);
    }
    assert.deepEqual(
      await waitFor(
        'Ready in kubectl get',
        async () => {
          const r = await columns();
          return r?.READY === 'True' ? r : undefined;
        },
        { timeoutMs: 30_000 },
      ),
      {
        DOMAIN: 'shop.example',
        SELECTOR: 'sluice1',
        DKIM: 'True',
        SPF: 'True',
        DMARC: 'Quarantine',
        READY: 'True',
      },
    );
    // the key Secret joined the pod's volumes (a rollout), then the config names the key
    await c.waitReady(1);

    const resolver = new Resolver();
    resolver.setServers([c.dns.address]);
    const verified = await waitFor(
      'a signed message at the sink',
      async () => {
        const subject = `signed ${randomBytes(4).toString('hex')}`;
        await mailer(c.submission(0), alice.username, alice.password).sendMail({
          from: 'alice@shop.example',
          to: `bob@${DOMAIN}`,
          subject,
          text: 'Hello, signed.',
        });
        const message = await waitFor(
          'the message at the sink',
          () => c.sink.messages.find((m) => m.raw.toString('utf8').includes(`Subject: ${subject}`)),
          { timeoutMs: 30_000 },
        );
        const result = await dkimVerify(message.raw, {
          resolver: (name: string, type: string) => resolver.resolve(name, type) as Promise<string[][]>,
        });
        const own = result.results.filter((r) => r.signingDomain === 'shop.example');
        return own.length > 0 ? own : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(
      verified.map((r) => [r.status.result, r.selector]),
      [['pass', 'sluice1']],
    );
  });
});
