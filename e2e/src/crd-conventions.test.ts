// The CRDs as a platform team's tools meet them on a real API server (and etcd): every
// field described in the OpenAPI that `kubectl explain` reads, listeners and conditions
// as maps with duplicates refused at admission, quantities as numbers or strings, and
// `kubectl scale` refused while autoscaling owns the replica count.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KubeClient, KubeObject } from '@sluice/operator/kube-client';
import { apiServerSkip, type ControlPlane, startApiServer } from '@sluice/operator/testing/api-server';
import { waitFor } from '@sluice/relay/testing/wait-for';

const skip = apiServerSkip();
const NS = 'mail';

type Json = Record<string, unknown>;

function policy(name: string, spec: Json = {}): string {
  return JSON.stringify({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata: { name, namespace: NS },
    spec: { hostname: 'relay.example.net', ...spec },
  });
}

describe('CRD conventions on a real API server', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  before(async () => {
    ({ cp, admin } = await startApiServer());
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  });
  after(() => cp?.stop());

  const apply = (input: string) => cp.kubectl(['apply', '-f', '-'], { input });
  async function refused(step: Promise<unknown>): Promise<string> {
    try {
      await step;
    } catch (err: unknown) {
      return (err as Error).message;
    }
    assert.fail('the API server accepted it');
  }

  it('publishes a description for every field, which kubectl explain shows', async () => {
    // published a moment after the CRDs are served
    const stdout = await waitFor('the OpenAPI v3 of sluice.dev', async () => {
      try {
        return (await cp.kubectl(['get', '--raw', '/openapi/v3/apis/sluice.dev/v1alpha1'])).stdout;
      } catch {
        return undefined;
      }
    });
    const schemas = (JSON.parse(stdout) as { components: { schemas: Record<string, Json> } }).components
      .schemas;
    const undescribed: string[] = [];
    const walk = (node: Json, path: string) => {
      for (const [k, v] of Object.entries((node.properties as Record<string, Json>) ?? {})) {
        // metadata is Kubernetes' own ObjectMeta, described there
        if (k !== 'metadata' && typeof v.description !== 'string') undescribed.push(`${path}.${k}`);
        if (k !== 'metadata') walk(v, `${path}.${k}`);
      }
      if (node.items) walk(node.items as Json, `${path}[]`);
      if (typeof node.additionalProperties === 'object') walk(node.additionalProperties as Json, `${path}{}`);
    };
    const kinds = Object.keys(schemas).filter((k) => k.startsWith('dev.sluice.') && !k.endsWith('List'));
    assert.ok(
      kinds.includes('dev.sluice.v1alpha1.RelayPolicy') && kinds.includes('dev.sluice.v1alpha1.SmtpUser'),
    );
    for (const kind of kinds) walk(schemas[kind] as Json, kind);
    assert.deepEqual(undescribed, [], 'fields without a description');

    const explained = await cp.kubectl(['explain', 'relaypolicy.spec.redis.username']);
    assert.match(explained.stdout, /FIELD: username <string>/);
    assert.match(explained.stdout, /ACL user name/);
  });

  it('refuses two listeners with one name or one port at admission, naming the field', async () => {
    const sameName = await refused(
      apply(
        policy('dup-name', {
          listeners: [
            { name: 'submission', port: 587 },
            { name: 'submission', port: 2587 },
          ],
        }),
      ),
    );
    assert.match(sameName, /spec\.listeners\[1\]: Duplicate value: \{"name":"submission"\}/);
    const samePort = await refused(
      apply(
        policy('dup-port', {
          listeners: [
            { name: 'submission', port: 587 },
            { name: 'other', port: 587 },
          ],
        }),
      ),
    );
    assert.match(
      samePort,
      /The RelayPolicy "dup-port" is invalid: spec\.listeners: Invalid value: listener ports must be unique/,
    );
  });

  it('takes the DMARC pre-check and a trusted CA from a ConfigMap or a Secret, refusing both or neither', async () => {
    await apply(
      policy('dmarc-ca', {
        dmarcPrecheck: { action: 'reject', resolvers: ['10.0.0.53'] },
        delivery: { trustedCa: { configMapName: 'corp-ca' } },
      }),
    );
    const stored = await admin.get<KubeObject & { spec: Json }>(
      'sluice.dev/v1alpha1',
      'RelayPolicy',
      NS,
      'dmarc-ca',
    );
    const spec = stored?.spec as { dmarcPrecheck?: Json; delivery?: { trustedCa?: Json } };
    assert.deepEqual(
      [spec.dmarcPrecheck?.action, spec.dmarcPrecheck?.timeoutMs, spec.delivery?.trustedCa],
      ['reject', 2000, { configMapName: 'corp-ca', key: 'ca.crt' }],
      'defaults filled in by the API server',
    );
    const both = await refused(
      apply(policy('ca-both', { delivery: { trustedCa: { configMapName: 'a', secretName: 'b' } } })),
    );
    assert.match(both, /trustedCa names either a configMapName or a secretName/);
    const neither = await refused(
      apply(policy('ca-neither', { delivery: { trustedCa: { key: 'ca.pem' } } })),
    );
    assert.match(neither, /trustedCa names either a configMapName or a secretName/);
    const tag = await refused(apply(policy('dmarc-tag', { dmarcPrecheck: { action: 'tag' } })));
    assert.match(tag, /spec\.dmarcPrecheck\.action: Unsupported value: "tag"/);
  });

  it('takes destination groups for shaping and the suppression classes, refusing a group named twice', async () => {
    await apply(
      policy('shaping', {
        shaping: {
          default: { connections: 4 },
          groups: [{ name: 'corp', mxSuffixes: ['.mx.corp.example'], connections: 2 }],
        },
        suppression: { classes: ['invalid-recipient', 'bad-domain'], ttlSeconds: 86400 },
      }),
    );
    const stored = await admin.get<KubeObject & { spec: Json }>(
      'sluice.dev/v1alpha1',
      'RelayPolicy',
      NS,
      'shaping',
    );
    const spec = stored?.spec as {
      shaping?: { default?: Json; groups?: Json[]; slowdownSeconds?: number };
      suppression?: Json;
    };
    assert.deepEqual(
      [spec.shaping?.default, spec.shaping?.slowdownSeconds, spec.suppression?.enabled],
      [
        { connections: 4, connectionsPerMinute: 100, messagesPerConnection: 100, messagesPerSecond: 100 },
        5400,
        true,
      ],
      'defaults filled in by the API server',
    );
    const twice = await refused(
      apply(
        policy('shaping-twice', {
          shaping: {
            groups: [
              { name: 'corp', mxSuffixes: ['.a.example'] },
              { name: 'corp', mxSuffixes: ['.b.example'] },
            ],
          },
        }),
      ),
    );
    assert.match(twice, /spec\.shaping\.groups\[1\]: Duplicate value: \{"name":"corp"\}/);
    const badClass = await refused(apply(policy('suppress-bad', { suppression: { classes: ['spam'] } })));
    assert.match(badClass, /spec\.suppression\.classes\[0\]: Unsupported value: "spam"/);
  });

  it('refuses two conditions of one type in status', async () => {
    await apply(policy('conditions'));
    const condition = {
      type: 'Ready',
      status: 'True',
      reason: 'PodsReady',
      message: 'ok',
      lastTransitionTime: '2026-12-05T14:00:00Z',
    };
    const message = await refused(
      cp.kubectl([
        'patch',
        'relaypolicy',
        'conditions',
        '-n',
        NS,
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status: { conditions: [condition, { ...condition, status: 'False' }] } }),
      ]),
    );
    assert.match(message, /status\.conditions\[1\]: Duplicate value: \{"type":"Ready"\}/);
  });

  it('takes a quantity as a number or a string, and refuses one that is neither', async () => {
    await apply(
      policy('quantities', {
        resources: { requests: { cpu: 1, memory: '256Mi' }, limits: { cpu: '1500m' } },
      }),
    );
    const { stdout } = await cp.kubectl([
      'get',
      'relaypolicy',
      'quantities',
      '-n',
      NS,
      '-o',
      'jsonpath={.spec.resources}',
    ]);
    assert.deepEqual(JSON.parse(stdout), { requests: { cpu: 1, memory: '256Mi' }, limits: { cpu: '1500m' } });
    const message = await refused(
      apply(policy('bad-quantity', { resources: { requests: { cpu: 'lots' } } })),
    );
    assert.match(
      message,
      /spec\.resources\.requests\.cpu: Invalid value: "lots": spec\.resources\.requests\.cpu in body should match/,
    );
  });

  it('refuses kubectl scale while autoscaling owns the replicas, and scales otherwise', async () => {
    await apply(policy('autoscaled', { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 6 } }));
    const message = await refused(
      cp.kubectl(['scale', 'relaypolicy', 'autoscaled', '-n', NS, '--replicas=5']),
    );
    assert.match(message, /spec\.replicas cannot change while spec\.autoscaling\.enabled is true/);
    // switching autoscaling off hands the count back
    await apply(policy('autoscaled', { autoscaling: { enabled: false } }));
    await cp.kubectl(['scale', 'relaypolicy', 'autoscaled', '-n', NS, '--replicas=5']);
    const { stdout } = await cp.kubectl([
      'get',
      'relaypolicy',
      'autoscaled',
      '-n',
      NS,
      '-o',
      'jsonpath={.spec.replicas}',
    ]);
    assert.equal(stdout, '5');
  });
});
