// Usage and abuse in SmtpUser status, against a real kube-apiserver: the operator asks an
// injected usage source (in a cluster, the relays' admin Service, which has no routing
// here) and writes status.usage, the AbuseSuspected condition and a Warning Event.
// Skipped, with the build command, when the control-plane binaries are not built.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { SmtpUser } from '../src/api/types.ts';
import { Controller, type ControllerMetrics } from '../src/controller/controller.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import type { ResourceType } from '../src/kube/resources.ts';
import { type SecretObject, secretValue } from '../src/reconcile/policy-inputs.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../src/testing/api-server.ts';
import type { PolicyUsage, UsageSource, UsageTarget } from '../src/usage/relay-usage.ts';

const skip = apiServerSkip();
const NS = 'usage';
const EVENTS: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

/** What the relays would report; the test changes it as the story goes on. */
class ScriptedUsage implements UsageSource {
  answer: PolicyUsage = {
    date: '2025-07-01',
    today: new Map(),
    flags: [],
    suspended: [],
    autoSuspend: false,
  };
  targets: UsageTarget[] = [];
  async fetch(target: UsageTarget): Promise<PolicyUsage> {
    this.targets.push(target);
    return this.answer;
  }
}

class Counting implements ControllerMetrics {
  successes = 0;
  reconciled(_kind: string, result: 'success' | 'error'): void {
    if (result === 'success') this.successes++;
  }
  leading(): void {}
}

const flag = {
  user: 'alice',
  kind: 'volume_spike',
  reason: 'VolumeSpike',
  message: '900 messages in the last hour, over 10× the median of the 24 hours before (12)',
  detectedAt: '2025-07-01T10:59:00.000Z',
};

describe('SmtpUser usage and abuse status on a real API server', { skip, timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let client: KubeClient;
  let controller: Controller;
  const usage = new ScriptedUsage();
  const metrics = new Counting();

  before(async () => {
    ({ cp, admin } = await startApiServer());
    client = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'usage-test' });
    controller = new Controller({
      client,
      metrics,
      resyncMs: 250,
      usageSource: usage,
      usageIntervalMs: 200,
      queue: { baseDelayMs: 50, maxDelayMs: 1000 },
    });
    controller.start();
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'alice-pw', namespace: NS },
      stringData: { password: 'correct horse battery staple' },
    } as KubeObject);
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name: 'mail', namespace: NS },
      spec: { hostname: 'relay.example.net', replicas: 1, abuse: { autoSuspend: true } },
    } as KubeObject);
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SmtpUser',
      metadata: { name: 'alice', namespace: NS },
      spec: { username: 'alice', policyRef: { name: 'mail' }, passwordSecretRef: { name: 'alice-pw' } },
    } as KubeObject);
  });
  after(async () => {
    await controller?.stop();
    await cp?.stop();
  });

  const alice = () => admin.get<SmtpUser>('sluice.dev/v1alpha1', 'SmtpUser', NS, 'alice');
  const conditionOf = async (type: string) =>
    ((await alice())?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);

  it("asks the policy's admin Service with its admin token", async () => {
    await waitFor('a usage request', () => usage.targets.length > 0);
    const internal = await admin.get<SecretObject>('v1', 'Secret', NS, 'mail-relay-internal');
    assert.deepEqual(usage.targets[0], {
      namespace: NS,
      policy: 'mail',
      url: `http://mail-relay-admin.${NS}.svc:9587`,
      token: secretValue(internal, 'admin-token'),
    });
    const none = await waitFor('AbuseSuspected=False', async () => {
      const c = await conditionOf('AbuseSuspected');
      return c?.status === 'False' ? c : undefined;
    });
    assert.equal(none.reason, 'NoneDetected');
  });

  it('writes status.usage and AbuseSuspected with a Warning Event, then the suspension', async () => {
    usage.answer = {
      ...usage.answer,
      today: new Map([
        [
          'alice',
          {
            messages: 900,
            recipients: 1800,
            bytes: 4_500_000,
            rejected: 3,
            authentications: 40,
            distinctClientIps: 2,
            rejections: { rate_limited: 3 },
            deliveries: {
              delivered: { total: 1750, classes: { accepted: 1750 } },
              deferred: { total: 40, classes: { 'rate-limited': 40 } },
              bounced: { total: 10, classes: { 'invalid-recipient': 9, 'spam-block': 1 } },
            },
          },
        ],
      ]),
      flags: [flag],
    };
    const suspected = await waitFor('AbuseSuspected=True', async () => {
      const c = await conditionOf('AbuseSuspected');
      return c?.status === 'True' ? c : undefined;
    });
    assert.equal(suspected.reason, 'VolumeSpike');
    assert.match(suspected.message, /^900 messages in the last hour/);
    assert.deepEqual((await alice())?.status?.usage, {
      date: '2025-07-01',
      messages: 900,
      recipients: 1800,
      bytes: 4_500_000,
      rejected: 3,
      authentications: 40,
      distinctClientIps: 2,
      rejections: [{ reason: 'rate_limited', count: 3 }],
      deliveries: {
        delivered: 1750,
        deferred: 40,
        bounced: 10,
        classes: [
          { result: 'delivered', class: 'accepted', count: 1750 },
          { result: 'deferred', class: 'rate-limited', count: 40 },
          { result: 'bounced', class: 'invalid-recipient', count: 9 },
          { result: 'bounced', class: 'spam-block', count: 1 },
        ],
      },
    });
    const events = await waitFor('a VolumeSpike Event', async () => {
      const { items } = await admin.list<
        KubeObject & { reason?: string; type?: string; regarding?: { name?: string } }
      >(EVENTS, { namespace: NS });
      const found = items.filter((e) => e.regarding?.name === 'alice' && e.reason === 'VolumeSpike');
      return found.length > 0 ? found : undefined;
    });
    assert.equal(events[0]?.type, 'Warning');
    assert.equal((await conditionOf('Ready'))?.status, 'True', 'flagged, not suspended yet');

    usage.answer = {
      ...usage.answer,
      autoSuspend: true,
      suspended: [
        { user: 'alice', reason: 'VolumeSpike', message: flag.message, until: '2025-07-02T10:59:00.000Z' },
      ],
    };
    const ready = await waitFor('Ready=False AbuseSuspended', async () => {
      const c = await conditionOf('Ready');
      return c?.reason === 'AbuseSuspended' ? c : undefined;
    });
    assert.equal(ready.status, 'False');
    assert.match(ready.message, /^The relays refuse this user until 2025-07-02T10:59:00.000Z: 900 messages/);
  });

  it('writes nothing while the report stays the same, and clears the condition when it does', async () => {
    const settled = metrics.successes + 10;
    await waitFor('10 more reconciles', () => metrics.successes >= settled);
    const writes = client.writesByVerb();
    const asked = usage.targets.length;
    const start = metrics.successes;
    await waitFor('20 more reconciles', () => metrics.successes >= start + 20);
    assert.deepEqual(client.writesByVerb(), writes, 'an unchanged report writes nothing');
    assert.ok(usage.targets.length > asked, 'the relays were asked again meanwhile');

    usage.answer = { ...usage.answer, flags: [], suspended: [] };
    await waitFor('AbuseSuspected=False and Ready again', async () => {
      const [abuse, ready] = [await conditionOf('AbuseSuspected'), await conditionOf('Ready')];
      return abuse?.reason === 'NoneDetected' && ready?.reason === 'Active';
    });
  });
});
