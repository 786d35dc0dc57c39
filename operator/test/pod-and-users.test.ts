// What a platform team sets about a RelayPolicy's pods and users, on a real kube-apiserver
// and etcd: names the API server refuses at admission, how pods are placed and how they
// stop, which SmtpUsers a policy accepts, and a username two SmtpUsers claim. As in
// controller.test.ts no kube-controller-manager or kubelet runs: the tests read the
// StatefulSet the operator applied, not pods.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RelayConfig } from '@sluice/relay/config-schema';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { parse } from 'yaml';
import type { RelayPolicy, SmtpUser } from '../src/api/types.ts';
import { Controller } from '../src/controller/controller.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import { type ResourceType, SECRETS } from '../src/kube/resources.ts';
import { type SecretObject, secretValue } from '../src/reconcile/policy-inputs.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../src/testing/api-server.ts';

const skip = apiServerSkip();

const EVENTS: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

interface PodSpec {
  terminationGracePeriodSeconds?: number;
  nodeSelector?: Record<string, string>;
  tolerations?: unknown[];
  affinity?: Record<string, unknown>;
  priorityClassName?: string;
  topologySpreadConstraints?: Array<Record<string, unknown>>;
}
interface StatefulSet extends KubeObject {
  spec: { template: { spec: PodSpec } };
}
interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

describe('pods and users of a RelayPolicy', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let controller: Controller;

  before(async () => {
    ({ cp, admin } = await startApiServer());
    controller = new Controller({
      client: new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'operator-a' }),
      workers: 2,
      resyncMs: 250,
      queue: { baseDelayMs: 50, maxDelayMs: 500 },
    });
    controller.start();
  });
  after(async () => {
    await controller?.stop();
    await cp?.stop();
  });

  async function namespace(name: string): Promise<string> {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    return name;
  }
  function policy(ns: string, spec: Record<string, unknown> = {}, name = 'mail'): Promise<RelayPolicy> {
    return admin.create<RelayPolicy>({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name, namespace: ns },
      spec: { hostname: 'relay.example.net', ...spec },
    } as KubeObject);
  }
  async function user(
    ns: string,
    name: string,
    options: { username?: string; labels?: Record<string, string> } = {},
  ): Promise<void> {
    await admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: `${name}-pw`, namespace: ns },
      stringData: { password: `${name}-secret` },
    } as KubeObject);
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SmtpUser',
      metadata: { name, namespace: ns, ...(options.labels ? { labels: options.labels } : {}) },
      spec: {
        username: options.username ?? name,
        policyRef: { name: 'mail' },
        passwordSecretRef: { name: `${name}-pw` },
      },
    } as KubeObject);
  }
  const podSpec = async (ns: string) =>
    (await admin.get<StatefulSet>('apps/v1', 'StatefulSet', ns, 'mail-relay'))?.spec.template.spec;
  const ready = async (ns: string, name: string) =>
    (
      (await admin.get<SmtpUser>('sluice.dev/v1alpha1', 'SmtpUser', ns, name))?.status?.conditions as
        | Condition[]
        | undefined
    )?.find((c) => c.type === 'Ready');
  const userReason = (ns: string, name: string, reason: string) =>
    waitFor(`${name} Ready reason ${reason}`, async () => {
      const c = await ready(ns, name);
      return c?.reason === reason ? c : undefined;
    });
  /** The usernames in the policy's users shards, as the relays read them. */
  async function usernames(ns: string): Promise<string[]> {
    const { items } = await admin.list<SecretObject>(SECRETS, {
      namespace: ns,
      labelSelector: 'sluice.dev/users-shards,app.kubernetes.io/instance=mail',
    });
    const count = (s: SecretObject) => Number(s.metadata.labels?.['sluice.dev/users-shards']);
    const newest = Math.max(0, ...items.map(count));
    return items
      .filter((s) => count(s) === newest)
      .flatMap(
        (s) =>
          (
            JSON.parse(secretValue(s, 'users.json') ?? '{"users":[]}') as {
              users: Array<{ username: string }>;
            }
          ).users,
      )
      .map((u) => u.username)
      .filter((u) => u !== 'sluice-internal-handoff')
      .sort();
  }

  it('refuses at admission a policy name its pods and Services could not carry, saying why', async () => {
    const ns = await namespace('names');
    const long = 'a'.repeat(47);
    await assert.rejects(policy(ns, {}, long), (err: Error) => {
      assert.match(err.message, /metadata\.name may have at most 46 characters/);
      assert.match(err.message, /<name>-relay-headless/);
      return true;
    });
    await assert.rejects(policy(ns, {}, 'mail.example'), /metadata\.name must start with a letter .*no dots/);
    await assert.rejects(policy(ns, {}, '1mail'), /metadata\.name must start with a letter/);
    // the longest name that fits gets all its objects, the StatefulSet and Services included
    const longest = 'b'.repeat(46);
    await policy(ns, {}, longest);
    await waitFor('the StatefulSet and Services of the longest name', async () => {
      const sts = await admin.get('apps/v1', 'StatefulSet', ns, `${longest}-relay`);
      const headless = await admin.get('v1', 'Service', ns, `${longest}-relay-headless`);
      return sts !== undefined && headless !== undefined;
    });
  });

  it('stops pods in order: readiness off and a shutdown delay, then the drain, all within the grace period', async () => {
    const ns = await namespace('rollout');
    await policy(ns, { rollout: { shutdownDelaySeconds: 20 }, drainDeadlineSeconds: 120 });
    const spec = await waitFor('the StatefulSet', () => podSpec(ns));
    // 20 s still accepting, 25 s for open sessions, 120 s of delivery, 15 s to hand on the rest
    assert.equal(spec.terminationGracePeriodSeconds, 20 + 25 + 120 + 15);
    const cm = await admin.get<KubeObject & { data: Record<string, string> }>(
      'v1',
      'ConfigMap',
      ns,
      'mail-relay-config',
    );
    const config = parse(cm?.data['config.yaml'] ?? '') as RelayConfig;
    assert.equal(config.drain.shutdownDelaySeconds, 20);
    assert.equal(config.drain.deadlineSeconds, 120);

    const defaults = await namespace('rollout-default');
    await policy(defaults);
    const d = await waitFor('the StatefulSet with defaults', () => podSpec(defaults));
    assert.equal(d.terminationGracePeriodSeconds, 10 + 25 + 60 + 15);
    await assert.rejects(
      policy(await namespace('rollout-bad'), { rollout: { shutdownDelaySeconds: 601 } }),
      /spec\.rollout\.shutdownDelaySeconds/,
    );
  });

  it('spreads replicas across nodes and zones by default, and passes affinity, tolerations, node selector and priority class', async () => {
    const ns = await namespace('placement');
    await policy(ns);
    const spread = (await waitFor('the StatefulSet', () => podSpec(ns))).topologySpreadConstraints;
    assert.deepEqual(
      spread?.map((c) => [c.topologyKey, c.whenUnsatisfiable, c.maxSkew]),
      [
        ['kubernetes.io/hostname', 'ScheduleAnyway', 1],
        ['topology.kubernetes.io/zone', 'ScheduleAnyway', 1],
      ],
    );
    assert.deepEqual(spread?.[0]?.labelSelector, {
      matchLabels: { 'app.kubernetes.io/name': 'sluice-relay', 'app.kubernetes.io/instance': 'mail' },
    });

    const placed = await namespace('placement-set');
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'node-role.example.com/mail', operator: 'Exists' }] },
          ],
        },
      },
    };
    const tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'mail', effect: 'NoSchedule' }];
    const own = [{ maxSkew: 2, topologyKey: 'rack', whenUnsatisfiable: 'DoNotSchedule' }];
    await policy(placed, {
      affinity,
      tolerations,
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      priorityClassName: 'system-cluster-critical',
      topologySpreadConstraints: own,
    });
    const spec = await waitFor('the StatefulSet', () => podSpec(placed));
    assert.deepEqual(spec.affinity, affinity);
    assert.deepEqual(spec.tolerations, tolerations);
    assert.deepEqual(spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(spec.priorityClassName, 'system-cluster-critical');
    assert.deepEqual(
      spec.topologySpreadConstraints?.map((c) => [c.topologyKey, c.maxSkew]),
      [['rack', 2]],
      'the spread the policy gives replaces the default',
    );
  });

  it('accepts only the SmtpUsers its userSelector matches and tells the others why', async () => {
    const ns = await namespace('selector');
    await policy(ns, {
      userSelector: {
        matchLabels: { tier: 'gold' },
        matchExpressions: [{ key: 'region', operator: 'In', values: ['eu', 'us'] }],
      },
    });
    await user(ns, 'alice', { labels: { tier: 'gold', region: 'eu' } });
    await user(ns, 'bob', { labels: { tier: 'silver', region: 'eu' } });
    await user(ns, 'carol', { labels: { tier: 'gold' } });
    await waitFor('only alice in the users file', async () => (await usernames(ns)).join() === 'alice');
    await userReason(ns, 'alice', 'Active');
    const bob = await userReason(ns, 'bob', 'NotSelected');
    assert.equal(bob.status, 'False');
    assert.equal(
      bob.message,
      'RelayPolicy mail accepts only SmtpUsers whose labels match tier=gold,region in (eu,us) (spec.userSelector); label this user to match, or change the selector',
    );
    await userReason(ns, 'carol', 'NotSelected');
    const status = (await admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', ns, 'mail'))?.status;
    assert.equal(status?.userCount, 1);

    // labelling a user brings it in; the API server refuses a selector that cannot work
    await cp.kubectl(['label', 'smtpuser/carol', '-n', ns, 'region=us']);
    await waitFor('carol in the users file', async () => (await usernames(ns)).join() === 'alice,carol');
    await userReason(ns, 'carol', 'Active');
    await assert.rejects(
      policy(ns, { userSelector: { matchExpressions: [{ key: 'tier', operator: 'In' }] } }, 'other'),
      /In and NotIn need values; Exists and DoesNotExist take none/,
    );
  });

  it('reports a username two SmtpUsers claim on both, naming the other, and lets neither in', async () => {
    const ns = await namespace('duplicates');
    await policy(ns);
    await user(ns, 'first', { username: 'shared@example.com' });
    await userReason(ns, 'first', 'Active');
    await waitFor('the first in the users file', async () =>
      (await usernames(ns)).includes('shared@example.com'),
    );
    await user(ns, 'second', { username: 'shared@example.com' });
    await user(ns, 'other', { username: 'other@example.com' });

    const first = await userReason(ns, 'first', 'DuplicateUsername');
    const second = await userReason(ns, 'second', 'DuplicateUsername');
    assert.equal(first.status, 'False');
    assert.match(first.message, /^username shared@example\.com is also used by SmtpUser second;/);
    assert.match(second.message, /^username shared@example\.com is also used by SmtpUser first;/);
    await waitFor(
      'neither in the users file',
      async () => (await usernames(ns)).join() === 'other@example.com',
    );
    await waitFor('a Warning Event on each', async () => {
      const { items } = await admin.list<KubeObject & { reason?: string; regarding?: { name?: string } }>(
        EVENTS,
        { namespace: ns },
      );
      const about = (n: string) =>
        items.some((e) => e.regarding?.name === n && e.reason === 'DuplicateUsername');
      return about('first') && about('second');
    });

    // deleting one gives the username back to the other
    await admin.delete('sluice.dev/v1alpha1', 'SmtpUser', ns, 'second');
    await userReason(ns, 'first', 'Active');
    await waitFor('the first back in the users file', async () =>
      (await usernames(ns)).includes('shared@example.com'),
    );
  });
});
