// The operator against a real kube-apiserver and etcd (operator/src/testing/control-plane.ts): the CRDs
// from crds/ are installed, resources are created the way kubectl would, and the tests
// read back what the operator made of them. Skipped, with the build command, when the
// control-plane binaries are not built.
//
// What does not run there, and how the tests deal with it:
//   - no kube-controller-manager: nothing writes a StatefulSet's status, so the tests
//     write it (as the StatefulSet controller would once pods are ready); and no garbage
//     collector, so deleting a RelayPolicy does not delete what it owns: the tests
//     assert the owner references the garbage collector would follow instead.
//   - no kubelet: no pod runs (e2e/ plays the kubelet for that).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RelayConfig } from '@sluice/relay/config-schema';
import { hashPassword, verifyPassword } from '@sluice/relay/password';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { parse } from 'yaml';
import type { RelayPolicy, SmtpUser } from '../src/api/types.ts';
import { DEFAULT_RELAY_DEFAULTS, type RelayDefaults } from '../src/build/relay-defaults.ts';
import { CONFIG_HASH_ANNOTATION } from '../src/build/workload.ts';
import { Controller, type ControllerMetrics } from '../src/controller/controller.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import { apiListWatch, Informer } from '../src/kube/informer.ts';
import { type ResourceType, SECRETS, STATEFUL_SETS } from '../src/kube/resources.ts';
import { type SecretObject, secretValue } from '../src/reconcile/policy-inputs.ts';
import {
  apiServerSkip,
  type ControlPlane,
  refuseAtAdmission,
  startApiServer,
} from '../src/testing/api-server.ts';

const skip = apiServerSkip();

const EVENTS: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

interface StatefulSet extends KubeObject {
  spec: {
    replicas?: number;
    template: {
      metadata: { annotations?: Record<string, string> };
      spec: { containers: Array<{ name: string; image?: string }> };
    };
  };
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

class Counting implements ControllerMetrics {
  successes = 0;
  errors = 0;
  hashed = 0;
  passwordHashed(): void {
    this.hashed++;
  }
  reconciled(_kind: string, result: 'success' | 'error'): void {
    if (result === 'success') this.successes++;
    else this.errors++;
  }
  /** terms of leadership begun */
  terms = 0;
  leading(isLeader: boolean): void {
    if (isLeader) this.terms++;
  }
}

interface Operator {
  /** the reconciles' client (the Lease goes through `leases`) */
  client: KubeClient;
  leases: KubeClient;
  controller: Controller;
  metrics: Counting;
  /** every write request of `client` (and its fenced copies), in order: what "writes nothing" checks */
  written: string[];
}

const NETWORK = {
  podNetworks: ['10.244.0.0/16'],
  relayNetworkPolicy: {
    operatorNamespace: 'sluice-system',
    operatorPodLabels: { 'app.kubernetes.io/name': 'sluice' },
    monitoringNamespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
  },
};

/** An operator as a replica would run it; `namespace`: it watches that namespace only. */
function startOperator(
  cp: ControlPlane,
  identity: string,
  relayDefaults?: RelayDefaults,
  namespace?: string,
  leaseDurationMs = 3000,
): Operator {
  const written: string[] = [];
  const client = new KubeClient(loadKubeConfig(cp.kubeconfigPath), {
    instance: identity,
    onWrite: (verb, { path }) => written.push(`${verb} ${path}`),
  });
  const leases = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: identity });
  const metrics = new Counting();
  const controller = new Controller({
    client,
    metrics,
    workers: 2,
    resyncMs: 250,
    queue: { baseDelayMs: 50, maxDelayMs: 1000 },
    network: NETWORK,
    ...(relayDefaults ? { relayDefaults } : {}),
    ...(namespace ? { namespace } : {}),
    leaderElection: {
      leases,
      namespace: 'kube-system',
      name: 'sluice-operator',
      identity,
      leaseDurationMs,
      renewIntervalMs: 500,
      retryIntervalMs: 200,
      renewDeadlineMs: (leaseDurationMs * 2) / 3,
    },
  });
  controller.start();
  return { client, leases, controller, metrics, written };
}

describe('operator on a real API server', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let op: Operator;

  before(async () => {
    ({ cp, admin } = await startApiServer());
    op = startOperator(cp, 'operator-a');
    await waitFor('operator-a to lead', () => op.controller.leading);
  });
  after(async () => {
    await op?.controller.stop();
    await cp?.stop();
  });

  const policyOf = (ns: string, name = 'mail') =>
    admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', ns, name);
  const userOf = (ns: string, name: string) =>
    admin.get<SmtpUser>('sluice.dev/v1alpha1', 'SmtpUser', ns, name);
  const stsOf = (ns: string) => admin.get<StatefulSet>('apps/v1', 'StatefulSet', ns, 'mail-relay');
  const condition = (conditions: Condition[] | undefined, type: string) =>
    conditions?.find((c) => c.type === type);
  const userReady = async (ns: string, name: string) =>
    condition((await userOf(ns, name))?.status?.conditions as Condition[] | undefined, 'Ready');
  /** The shard Secrets of a policy's users, by name. */
  const userShards = async (ns: string, policyName = 'mail') => {
    const { items } = await admin.list<SecretObject>(SECRETS, {
      namespace: ns,
      labelSelector: `sluice.dev/users-shards,app.kubernetes.io/instance=${policyName}`,
    });
    return new Map(items.map((s) => [s.metadata.name, s]));
  };
  /** The users of the newest set of shards, sorted by username, as the relays read them. */
  const usersFile = async (ns: string): Promise<Array<{ username: string; passwordHash: string }>> => {
    const out: Array<{ username: string; passwordHash: string }> = [];
    const shards = [...(await userShards(ns)).values()];
    const count = (s: SecretObject) => Number(s.metadata.labels?.['sluice.dev/users-shards']);
    const newest = Math.max(0, ...shards.map(count));
    for (const shard of shards.filter((s) => count(s) === newest)) {
      const text = secretValue(shard, 'users.json');
      if (text)
        out.push(...(JSON.parse(text) as { users: Array<{ username: string; passwordHash: string }> }).users);
    }
    return out.sort((a, b) => (a.username < b.username ? -1 : 1));
  };
  const usernames = async (ns: string) => (await usersFile(ns)).map((u) => u.username);

  async function namespace(name: string): Promise<string> {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    return name;
  }
  async function passwordSecret(ns: string, name: string, password: string): Promise<void> {
    await admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: ns },
      stringData: { password },
    } as KubeObject);
  }
  async function policy(ns: string, spec: Record<string, unknown> = {}, name = 'mail'): Promise<RelayPolicy> {
    return admin.create<RelayPolicy>({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name, namespace: ns },
      spec: { hostname: 'relay.example.net', ...spec },
    } as KubeObject);
  }
  async function user(ns: string, name: string, secret: string, policyName = 'mail'): Promise<void> {
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SmtpUser',
      metadata: { name, namespace: ns },
      spec: { username: name, policyRef: { name: policyName }, passwordSecretRef: { name: secret } },
    } as KubeObject);
  }
  async function mergePatch(obj: KubeObject, patch: unknown): Promise<void> {
    await cp.kubectl([
      'patch',
      `${obj.kind?.toLowerCase()}/${obj.metadata.name}`,
      '-n',
      obj.metadata.namespace ?? '',
      '--type=merge',
      '-p',
      JSON.stringify(patch),
    ]);
  }
  /** What the StatefulSet controller would write once `ready` pods run the current template. */
  async function podsReady(ns: string, ready: number): Promise<void> {
    const sts = await stsOf(ns);
    assert.ok(sts);
    await admin.patchStatus(STATEFUL_SETS, ns, 'mail-relay', {
      observedGeneration: sts.metadata.generation,
      replicas: sts.spec.replicas,
      readyReplicas: ready,
      updatedReplicas: sts.spec.replicas,
      currentReplicas: sts.spec.replicas,
      availableReplicas: ready,
      currentRevision: 'r1',
      updateRevision: 'r1',
    });
  }
  async function eventsAbout(ns: string, name: string) {
    const { items } = await admin.list<
      KubeObject & { reason?: string; type?: string; note?: string; regarding?: { name?: string } }
    >(EVENTS, { namespace: ns });
    return items.filter((e) => e.regarding?.name === name);
  }

  it('fences the relay pods with a NetworkPolicy and accepts the handoff account only from the pod network', async () => {
    const ns = await namespace('fenced');
    const created = await policy(ns);
    type Stored = KubeObject & { spec: { ingress: Array<{ from?: unknown[]; ports?: unknown[] }> } };
    const networkPolicyOf = () =>
      admin.get<Stored>('networking.k8s.io/v1', 'NetworkPolicy', ns, 'mail-relay');
    await waitFor('the NetworkPolicy', async () => (await networkPolicyOf()) !== undefined);
    const stored = await networkPolicyOf();
    assert.ok(stored);
    assert.equal(stored.metadata.ownerReferences?.[0]?.uid, created.metadata.uid);
    assert.deepEqual(
      stored.spec.ingress.map((rule) => [rule.from?.length ?? 0, rule.ports]),
      [
        [
          0,
          [
            { protocol: 'TCP', port: 587 },
            { protocol: 'TCP', port: 465 },
          ],
        ],
        [1, [{ protocol: 'TCP', port: 10025 }]],
        [2, [{ protocol: 'TCP', port: 9587 }]],
      ],
    );
    const configMap = await admin.get<KubeObject & { data?: Record<string, string> }>(
      'v1',
      'ConfigMap',
      ns,
      'mail-relay-config',
    );
    const config = parse(configMap?.data?.['config.yaml'] ?? '') as RelayConfig;
    assert.deepEqual(config.drain.handoff?.fromNetworks, ['10.244.0.0/16']);
  });

  it('turns a RelayPolicy and its SmtpUsers into owned objects and a status', async () => {
    const ns = await namespace('create');
    await passwordSecret(ns, 'alice-pw', 'correct horse battery staple');
    await passwordSecret(ns, 'bob-pw', 'Tr0ub4dor&3');
    const created = await policy(ns);
    await user(ns, 'alice', 'alice-pw');
    await user(ns, 'bob', 'bob-pw');

    const live = await waitFor('the policy status', async () => {
      const p = await policyOf(ns);
      return p?.status?.userCount === 2 && p.status.observedGeneration === 1 ? p : undefined;
    });
    const conditions = live.status?.conditions as Condition[];
    assert.deepEqual(
      conditions.map((c) => [c.type, c.status, c.reason]),
      [
        ['Ready', 'False', 'PodsNotReady'],
        ['Progressing', 'True', 'Scaling'],
        ['Degraded', 'True', 'NoSharedState'],
      ],
    );
    assert.equal(condition(conditions, 'Ready')?.message, '0 of 2 relay pods ready');
    assert.equal(
      condition(conditions, 'Degraded')?.message,
      'replicas > 1 without spec.redis: each pod counts rate limits alone',
    );
    assert.equal(
      live.status?.selector,
      'app.kubernetes.io/name=sluice-relay,app.kubernetes.io/instance=mail',
    );

    // every object is owned by the policy (the garbage collector, which does not run here, follows these)
    const owned: Array<[string, string, string]> = [
      ['v1', 'ConfigMap', 'mail-relay-config'],
      ['v1', 'Secret', 'mail-relay-users-1-0'],
      ['v1', 'Secret', 'mail-relay-internal'],
      ['apps/v1', 'StatefulSet', 'mail-relay'],
      ['v1', 'Service', 'mail-smtp'],
      ['v1', 'Service', 'mail-relay-admin'],
      ['v1', 'Service', 'mail-relay-headless'],
      ['policy/v1', 'PodDisruptionBudget', 'mail-relay'],
    ];
    for (const [apiVersion, kind, name] of owned) {
      const obj = await admin.get(apiVersion, kind, ns, name);
      assert.ok(obj, `${kind} ${name} exists`);
      assert.deepEqual(
        obj.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid, r.controller]),
        [['RelayPolicy', 'mail', created.metadata.uid, true]],
        `${kind} ${name} is owned by the policy`,
      );
    }
    assert.equal(await admin.get('autoscaling/v2', 'HorizontalPodAutoscaler', ns, 'mail-relay'), undefined);

    const config = await admin.get<KubeObject & { data: Record<string, string> }>(
      'v1',
      'ConfigMap',
      ns,
      'mail-relay-config',
    );
    assert.match(config?.data['config.yaml'] ?? '', /hostname: relay\.example\.net/);
    assert.equal((await stsOf(ns))?.spec.replicas, 2);

    // the users Secret holds hashes only (written as the hashes become ready)
    const users = await waitFor('both users hashed', async () => {
      const found = await usersFile(ns);
      return found.length === 3 ? found : undefined;
    });
    assert.deepEqual(
      users.map((u) => u.username),
      ['alice', 'bob', 'sluice-internal-handoff'],
    );
    const alice = users.find((u) => u.username === 'alice');
    assert.ok(alice && (await verifyPassword('correct horse battery staple', alice.passwordHash)));
    const secret = await admin.get<SecretObject>('v1', 'Secret', ns, 'mail-relay-users-1-0');
    const everything =
      JSON.stringify(secret) +
      Object.keys(secret?.data ?? {})
        .map((k) => secretValue(secret, k))
        .join('');
    for (const plain of ['correct horse battery staple', 'Tr0ub4dor&3']) {
      assert.equal(everything.includes(plain), false, 'no plain password in the users Secret');
    }
    const internal = await admin.get<SecretObject>('v1', 'Secret', ns, 'mail-relay-internal');
    assert.ok((secretValue(internal, 'handoff-password') ?? '').length >= 32);
    assert.ok((secretValue(internal, 'admin-token') ?? '').length >= 32);

    for (const name of ['alice', 'bob']) {
      // user statuses are written right after the policy's
      const u = await waitFor(`${name}'s status`, async () => {
        const found = await userOf(ns, name);
        return found?.status?.observedGeneration === 1 ? found : undefined;
      });
      const ready = condition(u.status?.conditions as Condition[], 'Ready');
      assert.deepEqual([ready?.status, ready?.reason], ['True', 'Active']);
    }

    // the pods become ready (the test writes what the StatefulSet controller would)
    await podsReady(ns, 2);
    const ready = await waitFor('Ready=True', async () => {
      const c = condition((await policyOf(ns))?.status?.conditions as Condition[], 'Ready');
      return c?.status === 'True' ? c : undefined;
    });
    assert.deepEqual([ready.reason, ready.message], ['PodsReady', '2 of 2 relay pods ready']);
    assert.equal((await policyOf(ns))?.status?.readyReplicas, 2);

    // the handoff password and admin token are generated once, and hashes are not redone
    const again = await admin.get<SecretObject>('v1', 'Secret', ns, 'mail-relay-internal');
    assert.equal(secretValue(again, 'handoff-password'), secretValue(internal, 'handoff-password'));
    assert.deepEqual(await usersFile(ns), users);
  });

  it('scales the StatefulSet through the scale subresource (kubectl scale)', async () => {
    const ns = await namespace('scale');
    await policy(ns);
    await waitFor('the StatefulSet', () => stsOf(ns));
    await cp.kubectl(['scale', 'relaypolicy/mail', '-n', ns, '--replicas=3']);
    await waitFor('3 replicas', async () => (await stsOf(ns))?.spec.replicas === 3);
    const scale = JSON.parse(
      (
        await cp.kubectl([
          'get',
          '--raw',
          `/apis/sluice.dev/v1alpha1/namespaces/${ns}/relaypolicies/mail/scale`,
        ])
      ).stdout,
    ) as { spec: { replicas: number } };
    assert.equal(scale.spec.replicas, 3);
  });

  it('reloads a limit in place but rolls the pods for a listener change', async () => {
    const ns = await namespace('edit');
    const p = await policy(ns);
    const configYaml = async () =>
      (
        await admin.get<KubeObject & { data: Record<string, string> }>(
          'v1',
          'ConfigMap',
          ns,
          'mail-relay-config',
        )
      )?.data['config.yaml'] ?? '';
    const templateHash = async () =>
      (await stsOf(ns))?.spec.template.metadata.annotations?.[CONFIG_HASH_ANNOTATION];
    await waitFor('the ConfigMap', async () => (await configYaml()).includes('maxRecipients: 30'));
    const hash = await waitFor('the pod-template hash', templateHash);

    await mergePatch(p, { spec: { limits: { maxRecipients: 5 } } });
    await waitFor('the new limit in the ConfigMap', async () =>
      (await configYaml()).includes('maxRecipients: 5'),
    );
    assert.equal(await templateHash(), hash, 'a limit is reloaded by the relay: the pod template stays');

    await mergePatch(p, { spec: { listeners: [{ name: 'submission', port: 2587, tls: 'starttls' }] } });
    await waitFor('the listener in the ConfigMap', async () => (await configYaml()).includes('port: 2587'));
    const rolled = await waitFor('a new pod-template hash', async () => {
      const h = await templateHash();
      return h !== hash ? h : undefined;
    });
    assert.ok(rolled);
    await waitFor('the Service on the new port', async () => {
      const svc = await admin.get<KubeObject & { spec: { ports: Array<{ port: number }> } }>(
        'v1',
        'Service',
        ns,
        'mail-smtp',
      );
      return svc?.spec.ports.map((port) => port.port).join() === '2587';
    });
  });

  it('keeps a user with a missing Secret out, says why, and lets it in once the Secret exists', async () => {
    const ns = await namespace('missing');
    await passwordSecret(ns, 'alice-pw', 'alice-secret-1');
    await policy(ns);
    await user(ns, 'alice', 'alice-pw');
    await user(ns, 'carol', 'carol-pw');
    await user(ns, 'dave', 'alice-pw', 'nowhere');

    const carol = await waitFor('carol SecretNotFound', async () => {
      const c = await userReady(ns, 'carol');
      return c?.reason === 'SecretNotFound' ? c : undefined;
    });
    assert.equal(carol.status, 'False');
    assert.match(carol.message, /Secret carol-pw with key password not found/);
    await waitFor(
      'alice, not held back by carol, in the users file',
      async () => (await usernames(ns)).join() === 'alice,sluice-internal-handoff',
    );
    await waitFor('alice Ready', async () => (await userReady(ns, 'alice'))?.status === 'True');
    const degraded = await waitFor('Degraded=UsersRejected', async () => {
      const c = condition((await policyOf(ns))?.status?.conditions as Condition[], 'Degraded');
      return c?.reason === 'UsersRejected' ? c : undefined;
    });
    assert.match(degraded.message, /carol \(SecretNotFound\)/);
    const events = await waitFor('a Warning Event about carol', async () => {
      const e = await eventsAbout(ns, 'carol');
      return e.length > 0 ? e : undefined;
    });
    assert.deepEqual([events[0]?.type, events[0]?.reason], ['Warning', 'SecretNotFound']);

    const dave = await waitFor('dave PolicyNotFound', async () => {
      const c = await userReady(ns, 'dave');
      return c?.reason === 'PolicyNotFound' ? c : undefined;
    });
    assert.equal(dave.message.startsWith(`RelayPolicy nowhere not found in namespace ${ns}`), true);

    await passwordSecret(ns, 'carol-pw', 'carol-secret-1');
    await waitFor('carol in the users file', async () => (await usernames(ns)).includes('carol'));
    await waitFor('carol Ready', async () => (await userReady(ns, 'carol'))?.status === 'True');
  });

  it('reports a config the relay refuses, with an Event, and applies none of it', async () => {
    const ns = await namespace('invalid');
    // (two listeners on one port are refused by the API server already; the hand-off
    // listener's port is one only the relay's own checks know)
    await policy(ns, { listeners: [{ name: 'one', port: 10025, tls: 'starttls' }] });
    const ready = await waitFor('Ready=False ConfigInvalid', async () => {
      const c = condition((await policyOf(ns))?.status?.conditions as Condition[], 'Ready');
      return c?.reason === 'ConfigInvalid' ? c : undefined;
    });
    assert.equal(ready.status, 'False');
    assert.match(ready.message, /10025 is already used/);
    const events = await waitFor('a ConfigInvalid Event', async () => {
      const e = (await eventsAbout(ns, 'mail')).filter((x) => x.reason === 'ConfigInvalid');
      return e.length > 0 ? e : undefined;
    });
    assert.equal(events[0]?.type, 'Warning');
    assert.equal(await admin.get('v1', 'ConfigMap', ns, 'mail-relay-config'), undefined);
    assert.equal(await stsOf(ns), undefined);
  });

  it('creates the HPA with autoscaling on and deletes it when turned off', async () => {
    const ns = await namespace('hpa');
    const p = await policy(ns, { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 4 } });
    const hpa = await waitFor('the HPA', () =>
      admin.get('autoscaling/v2', 'HorizontalPodAutoscaler', ns, 'mail-relay'),
    );
    assert.equal(hpa.metadata.ownerReferences?.[0]?.uid, p.metadata.uid);
    await mergePatch(p, { spec: { autoscaling: { enabled: false } } });
    await waitFor(
      'the HPA to be deleted',
      async () =>
        (await admin.get('autoscaling/v2', 'HorizontalPodAutoscaler', ns, 'mail-relay')) === undefined,
    );
  });

  it('tells the users of a deleted policy, whose objects keep their owner references for the GC', async () => {
    const ns = await namespace('delete');
    await passwordSecret(ns, 'alice-pw', 'pw-alice-1');
    const p = await policy(ns);
    await user(ns, 'alice', 'alice-pw');
    await waitFor('alice Ready', async () => (await userReady(ns, 'alice'))?.status === 'True');
    await cp.kubectl(['delete', 'relaypolicy/mail', '-n', ns]);
    const c = await waitFor('alice PolicyNotFound', async () => {
      const r = await userReady(ns, 'alice');
      return r?.reason === 'PolicyNotFound' ? r : undefined;
    });
    assert.equal(c.status, 'False');
    // no garbage collector runs here; in a cluster it deletes these through their owner reference
    const cm = await admin.get('v1', 'ConfigMap', ns, 'mail-relay-config');
    assert.equal(cm?.metadata.ownerReferences?.[0]?.uid, p.metadata.uid);
  });

  it('puts back what kubectl edits in its objects, once, and leaves other fields alone', async () => {
    const ns = await namespace('drift');
    await policy(ns, { replicas: 2 });
    const cmOf = () =>
      admin.get<KubeObject & { data?: Record<string, string> }>('v1', 'ConfigMap', ns, 'mail-relay-config');
    await waitFor('the ConfigMap and StatefulSet', async () => Boolean((await cmOf()) && (await stsOf(ns))));
    const config = (await cmOf())?.data?.['config.yaml'];
    assert.ok(config);
    const sts = await stsOf(ns);
    assert.ok(sts);
    const image = sts.spec.template.spec.containers[0]?.image;

    // hand edits: the hash annotation stays as it was, so only the managed fields tell
    await mergePatch((await cmOf()) as KubeObject, { data: { 'config.yaml': 'hand: edited\n' } });
    await cp.kubectl(['scale', 'statefulset/mail-relay', '-n', ns, '--replicas=5']);
    await cp.kubectl(['set', 'image', 'statefulset/mail-relay', '-n', ns, 'relay=example.net/other:1']);
    await cp.kubectl(['label', 'statefulset/mail-relay', '-n', ns, 'team=mail']);
    await waitFor('the ConfigMap put back', async () => (await cmOf())?.data?.['config.yaml'] === config);
    await waitFor('the StatefulSet put back', async () => {
      const live = await stsOf(ns);
      return live?.spec.replicas === 2 && live.spec.template.spec.containers[0]?.image === image;
    });
    assert.equal((await stsOf(ns))?.metadata.labels?.team, 'mail', 'a label the operator does not set stays');

    // answered once: no apply after that
    const settled = op.metrics.successes + 10;
    await waitFor('10 more reconciles', () => op.metrics.successes >= settled);
    const before = op.written.length;
    const start = op.metrics.successes;
    await waitFor('20 resync reconciles', () => op.metrics.successes >= start + 20);
    assert.deepEqual(op.written.slice(before), [], 'no write once the hand edits are answered');
  });

  it('makes no write requests in steady state', async () => {
    // every policy of the earlier tests is still there and reconciled every 250 ms
    const ns = await namespace('steady');
    await passwordSecret(ns, 'alice-pw', 'steady-pw-1');
    await policy(ns, { replicas: 1 });
    await user(ns, 'alice', 'alice-pw');
    await waitFor('the policy status', async () => (await policyOf(ns))?.status?.userCount === 1);
    await podsReady(ns, 1);
    await waitFor('Ready', async () => {
      const c = condition((await policyOf(ns))?.status?.conditions as Condition[], 'Ready');
      return c?.status === 'True';
    });
    await waitFor('alice Ready', async () => (await userReady(ns, 'alice'))?.status === 'True');
    // let the reconciles that started before the last write finish
    const settled = op.metrics.successes + 10;
    await waitFor('10 more reconciles', () => op.metrics.successes >= settled);

    const before = op.written.length;
    const start = op.metrics.successes;
    await waitFor('40 resync reconciles', () => op.metrics.successes >= start + 40);
    assert.deepEqual(op.written.slice(before), [], 'steady state writes nothing');
    assert.equal(op.metrics.errors, 0);
  });

  it('keeps the internal secrets it made while their Secret is refused, so no password is hashed again', async () => {
    const ns = await namespace('internal-refused');
    // an admission policy refuses the policy's internal Secret until the test lifts it
    const lift = await refuseAtAdmission(admin, {
      name: 'no-internal-secret',
      namespace: ns,
      resource: 'secrets',
      expression: "object.metadata.name != 'mail-relay-internal'",
      message: 'refused for the test',
      probe: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'mail-relay-internal', namespace: ns } },
    });

    const hashedBefore = op.metrics.hashed;
    await passwordSecret(ns, 'alice-pw', 'refused-pw-1');
    await policy(ns, { replicas: 1 });
    await user(ns, 'alice', 'alice-pw');
    const hashOf = async () => (await usersFile(ns)).find((u) => u.username === 'alice')?.passwordHash;
    const first = await waitFor("alice's hash in the users shard", hashOf);
    const degraded = await waitFor('Degraded naming the internal Secret', async () => {
      const c = condition((await policyOf(ns))?.status?.conditions as Condition[], 'Degraded');
      return c?.status === 'True' && /mail-relay-internal/.test(c.message) ? c : undefined;
    });
    assert.match(degraded.message, /refused for the test/);
    // many retries while the Secret is refused: the same fingerprint key, so no new hash
    const start = op.metrics.successes + op.metrics.errors;
    await waitFor('20 more reconciles', () => op.metrics.successes + op.metrics.errors >= start + 20);
    assert.equal(await hashOf(), first, 'the users shard keeps the first hash');

    await lift();
    await waitFor('the internal Secret written', () => admin.get('v1', 'Secret', ns, 'mail-relay-internal'));
    const settled = op.metrics.successes + 10;
    await waitFor('10 more reconciles', () => op.metrics.successes >= settled);
    assert.equal(await hashOf(), first, 'nor once the Secret holds the key it was made with');
    // alice's password and the hand-off password, once each
    assert.equal(op.metrics.hashed - hashedBefore, 2);
  });

  it('keeps a second operator on standby until the first releases the lease', async () => {
    const b = startOperator(cp, 'operator-b');
    try {
      await waitFor('b to read the lease', () => b.controller.readiness().ok);
      assert.deepEqual(b.controller.readiness(), { ok: true, detail: 'standby' });
      // a standby only reads: over several renew intervals of the leader it writes nothing
      const lease = await admin.getLease('kube-system', 'sluice-operator');
      await waitFor('two renewals by operator-a', async () => {
        const now = await admin.getLease('kube-system', 'sluice-operator');
        return Date.parse(now?.spec?.renewTime ?? '') > Date.parse(lease?.spec?.renewTime ?? '') + 900;
      });
      assert.equal(b.controller.leading, false);
      assert.equal(b.client.writes + b.leases.writes, 0, 'a standby writes nothing, not even the Lease');
      assert.equal(b.metrics.successes, 0, 'a standby does not reconcile');

      await op.controller.stop();
      await waitFor('b to take over', () => b.controller.leading);
      const taken = await admin.getLease('kube-system', 'sluice-operator');
      assert.equal(taken?.spec?.holderIdentity, 'operator-b');
      await waitFor('b to reconcile', () => b.metrics.successes >= 20);
      assert.equal(b.client.writes, 0, 'the new leader finds everything as it would have made it');

      // and b does the work from now on
      const p = await policyOf('edit');
      assert.ok(p);
      await mergePatch(p, { spec: { limits: { maxRecipients: 7 } } });
      await waitFor('b to apply the edit', async () =>
        (
          await admin.get<KubeObject & { data: Record<string, string> }>(
            'v1',
            'ConfigMap',
            'edit',
            'mail-relay-config',
          )
        )?.data['config.yaml']?.includes('maxRecipients: 7'),
      );
    } finally {
      await b.controller.stop();
    }
  });

  it('relists an informer whose watch goes quiet, and keeps delivering events', async () => {
    const ns = await namespace('informer');
    const seen: string[] = [];
    const informer = new Informer<SecretObject>({
      listWatch: apiListWatch(admin, SECRETS, { namespace: ns }),
      stallMs: 300,
    });
    informer.on({
      add: (o) => seen.push(`add ${o.metadata.name}`),
      delete: (o) => seen.push(`delete ${o.metadata.name}`),
    });
    informer.start();
    try {
      await informer.synced();
      // nothing happens in this namespace: the stall detector relists again and again
      await waitFor('three relists of a quiet watch', () => informer.relists >= 3);
      await passwordSecret(ns, 'late', 'pw');
      await waitFor('the add', () => seen.includes('add late'));
      await cp.kubectl(['delete', 'secret/late', '-n', ns]);
      await waitFor('the delete', () => seen.includes('delete late'));
      assert.equal(informer.get(ns, 'late'), undefined);
    } finally {
      await informer.stop();
    }
  });

  it('runs as a process: /readyz and /metrics, each write named at debug level, and SIGTERM releases the lease', async () => {
    const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.ts');
    const child = spawn(process.execPath, [main], {
      env: {
        PATH: process.env.PATH ?? '',
        KUBECONFIG: cp.kubeconfigPath,
        POD_NAME: 'operator-main',
        LEASE_NAMESPACE: 'kube-system',
        LEASE_NAME: 'sluice-operator-main',
        ADMIN_PORT: '0',
        ADMIN_HOST: '127.0.0.1',
        LOG_LEVEL: 'debug',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    try {
      const port = await waitFor('the admin port in the log', () => {
        const m = output.match(/"adminPort":(\d+)/);
        return m ? Number(m[1]) : undefined;
      });
      const base = `http://127.0.0.1:${port}`;
      // ready at once as a healthy standby, then as the leader with synced caches
      await waitFor('/readyz as the leader', async () => {
        const res = await fetch(`${base}/readyz`);
        const body = (await res.json()) as { detail?: string };
        return res.status === 200 && body.detail === 'leading; caches synced';
      });
      const metrics = await waitFor('a reconcile in /metrics', async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        return /^sluice_operator_reconcile_total\{kind="RelayPolicy",result="success"\} [1-9]/m.test(text)
          ? text
          : undefined;
      });
      assert.match(metrics, /^sluice_operator_leader 1$/m);
      assert.match(metrics, /^sluice_operator_workqueue_depth \d+$/m);
      // the reconcile's writes, each with what it wrote; log lines reach standard output in
      // batches, up to 100 ms after they are made (observability/logger.ts), so the metric can
      // come first
      const writes = () =>
        output
          .slice(0, output.lastIndexOf('\n')) // whole lines only: a read can end mid-line
          .split('\n')
          .filter((l) => l.includes('"event":"kube_write"'))
          .map((l) => JSON.parse(l) as { level: string; verb: string; path: string });
      const configMapApply = (w: { level: string; verb: string; path: string }) =>
        w.level === 'debug' && w.verb === 'apply' && /\/configmaps\/[a-z0-9-]+$/.test(w.path);
      await waitFor('the ConfigMap apply in the log', () => writes().some(configMapApply)).catch(
        () => undefined,
      );
      assert.ok(
        writes().some(configMapApply),
        `a ConfigMap apply among ${JSON.stringify(writes().slice(0, 5))}`,
      );
      assert.equal(
        (await admin.getLease('kube-system', 'sluice-operator-main'))?.spec?.holderIdentity,
        'operator-main',
      );
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
      const lease = await admin.getLease('kube-system', 'sluice-operator-main');
      assert.equal(lease?.spec?.holderIdentity, undefined, 'released: a standby takes over at once');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('adds a ServiceMonitor once the cluster serves that API', async () => {
    // a stand-in for the prometheus-operator CRD: the same group, version and kind
    await admin.apply({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'servicemonitors.monitoring.coreos.com' },
      spec: {
        group: 'monitoring.coreos.com',
        scope: 'Namespaced',
        names: {
          kind: 'ServiceMonitor',
          plural: 'servicemonitors',
          singular: 'servicemonitor',
          listKind: 'ServiceMonitorList',
        },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        ],
      },
    } as KubeObject);
    await waitFor('the ServiceMonitor API', () => admin.servesApi('monitoring.coreos.com/v1'));
    // the API is looked up once per term of leadership: a new operator sees it
    const c = startOperator(cp, 'operator-c', {
      ...DEFAULT_RELAY_DEFAULTS,
      serviceMonitor: { labels: { release: 'kube-prometheus-stack' }, interval: '15s' },
    });
    try {
      const sm = await waitFor('the ServiceMonitor', () =>
        admin.get<KubeObject & { spec: { endpoints: Array<{ interval: string }> } }>(
          'monitoring.coreos.com/v1',
          'ServiceMonitor',
          'create',
          'mail-relay',
        ),
      );
      const p = await policyOf('create');
      assert.equal(sm.metadata.ownerReferences?.[0]?.uid, p?.metadata.uid);
      assert.equal(
        sm.metadata.labels?.release,
        'kube-prometheus-stack',
        'selected by a stock kube-prometheus-stack',
      );
      assert.equal(sm.spec.endpoints[0]?.interval, '15s');
    } finally {
      await c.controller.stop();
    }
  });

  it('shards many users, hashes nothing and writes nothing after a restart, and rewrites one shard for one change', async () => {
    const ns = await namespace('restart');
    await op.controller.stop(); // (stopped already when the whole file runs)
    // Both operators watch this test's namespace only: the hashes and writes counted are
    // its own, not those of policies earlier tests left (an operator that watches them all
    // hashes again the passwords of a policy whose fingerprint key never reached its Secret).
    // a term ends when a renewal misses its deadline, as on a busy machine, and the next
    // term starts with nothing in memory (it hashes again what was not yet in a shard): a
    // long lease keeps this test to one term, which it checks
    const a = startOperator(cp, 'operator-scale-a', undefined, ns, 60_000);
    const BULK = 2100;
    try {
      await waitFor('operator-scale-a to lead', () => a.controller.leading);
      // the bulk users share a Secret holding a hash: nothing to hash for them
      await admin.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'bulk-pw', namespace: ns },
        stringData: { password: await hashPassword('bulk password') },
      } as KubeObject);
      await policy(ns, { replicas: 1 });
      for (const name of ['plain-1', 'plain-2', 'plain-3']) {
        await passwordSecret(ns, `${name}-pw`, `${name} secret`);
        await user(ns, name, `${name}-pw`);
      }
      for (let i = 0; i < BULK; i += 16) {
        await Promise.all(
          Array.from({ length: Math.min(16, BULK - i) }, (_, j) => user(ns, `bulk-${i + j}`, 'bulk-pw')),
        );
      }
      await waitFor('every user in the shards', async () => (await usersFile(ns)).length === BULK + 4, {
        timeoutMs: 120_000,
      });
      assert.equal(a.metrics.terms, 1, 'one term of leadership');
      assert.equal(a.metrics.hashed, 4, 'the three plain passwords and the hand-off password, once each');
      // the pods mount the new set (then the StatefulSet controller would roll them)
      await waitFor('the StatefulSet to mount 4 shards', async () => {
        const sts = (await stsOf(ns)) as unknown as {
          spec: {
            template: { spec: { volumes: Array<{ name: string; projected?: { sources: unknown[] } }> } };
          };
        };
        return (
          sts.spec.template.spec.volumes.find((v) => v.name === 'users')?.projected?.sources.length === 4
        );
      });
      await podsReady(ns, 1);
      await waitFor('the users Ready', async () => (await userReady(ns, 'bulk-0'))?.status === 'True');
      // the sets of 1 and 2 shards written on the way are deleted once the pods mount the new one
      await waitFor('only the current set left', async () => (await userShards(ns)).size === 4, {
        timeoutMs: 30_000,
      });
      // a stops at rest: its last status writes are done (resync every 250 ms reconciles)
      let writes = a.client.writes;
      let since = a.metrics.successes;
      await waitFor(
        'operator-scale-a to write nothing for 10 reconciles',
        () => {
          if (a.client.writes !== writes) {
            writes = a.client.writes;
            since = a.metrics.successes;
          }
          return a.metrics.successes >= since + 10;
        },
        { timeoutMs: 60_000 },
      );
    } finally {
      await a.controller.stop();
    }

    const shardsBefore = await userShards(ns);
    assert.equal(shardsBefore.size, 4, '2,104 users: 4 shards of about 500');
    const b = startOperator(cp, 'operator-scale-b', undefined, ns, 60_000);
    try {
      await waitFor('operator-scale-b to lead', () => b.controller.leading);
      await waitFor('b to reconcile', () => b.metrics.successes >= 30, { timeoutMs: 60_000 });
      assert.equal(b.metrics.terms, 1, 'one term of leadership');
      assert.equal(b.metrics.hashed, 0, 'a restart hashes no unchanged password');
      assert.equal(b.controller.passwordsHashed, 0);
      assert.equal(b.client.writes, 0, 'a restart writes nothing when nothing changed');
      assert.deepEqual(
        [...(await userShards(ns)).values()].map((s) => s.metadata.resourceVersion),
        [...shardsBefore.values()].map((s) => s.metadata.resourceVersion),
      );

      // one password changes: its shard is rewritten, once, with a new hash; no other shard
      await admin.apply({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'plain-2-pw', namespace: ns },
        stringData: { password: 'plain-2 new secret' },
      } as KubeObject);
      const changed = await waitFor('the new hash in the users', async () => {
        const entry = (await usersFile(ns)).find((u) => u.username === 'plain-2');
        return entry && (await verifyPassword('plain-2 new secret', entry.passwordHash)) ? entry : undefined;
      });
      assert.ok(changed);
      const settled = b.metrics.successes + 10;
      await waitFor('10 more reconciles', () => b.metrics.successes >= settled);
      const after = await userShards(ns);
      const rewritten = [...after.values()].filter(
        (s) => shardsBefore.get(s.metadata.name)?.metadata.resourceVersion !== s.metadata.resourceVersion,
      );
      assert.equal(rewritten.length, 1, 'one shard rewritten');
      assert.equal(b.metrics.hashed, 1);
      assert.deepEqual(b.client.writesByVerb(), { apply: 1, create: 0, replace: 0, patch: 0, delete: 0 });

      // a new user: its shard, its status and the policy's user count
      const writes = b.client.writes;
      await passwordSecret(ns, 'newcomer-pw', 'newcomer secret');
      await user(ns, 'newcomer', 'newcomer-pw');
      await waitFor('the newcomer Ready', async () => (await userReady(ns, 'newcomer'))?.status === 'True');
      await waitFor('the user count', async () => (await policyOf(ns))?.status?.userCount === BULK + 4);
      const more = b.metrics.successes + 10;
      await waitFor('10 more reconciles', () => b.metrics.successes >= more);
      assert.ok(b.client.writes - writes <= 3, `${b.client.writes - writes} writes for one new user`);
    } finally {
      await b.controller.stop();
    }
  });
});
