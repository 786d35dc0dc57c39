// A RelayPolicy through its life on a real kube-apiserver and etcd: objects the API
// server refuses, changes that cannot be applied in place, autoscaling switched on and
// off. As in controller.test.ts no kube-controller-manager runs, so the tests write what
// it would (a StatefulSet's status, a PersistentVolumeClaim's binding).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { parseAllDocuments } from 'yaml';
import type { RelayPolicy } from '../src/api/types.ts';
import { Controller } from '../src/controller/controller.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import { apiListWatch, Informer } from '../src/kube/informer.ts';
import { parseNamespaces } from '../src/kube/informer-set.ts';
import { type ResourceType, STATEFUL_SETS } from '../src/kube/resources.ts';
import {
  apiServerSkip,
  type ControlPlane,
  refuseAtAdmission,
  startApiServer,
} from '../src/testing/api-server.ts';
import { binaryPaths } from '../src/testing/control-plane.ts';

const skip = apiServerSkip();
const execFileAsync = promisify(execFile);
const CHART = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'charts', 'sluice');

const EVENTS: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

interface ClaimSpec {
  storageClassName?: string;
  accessModes: string[];
  resources: { requests: { storage: string } };
}
interface Claim extends KubeObject {
  spec: ClaimSpec;
}
interface StatefulSet extends KubeObject {
  spec: {
    replicas?: number;
    volumeClaimTemplates: Array<{ metadata: { labels?: Record<string, string> }; spec: ClaimSpec }>;
    template: {
      metadata: { annotations?: Record<string, string> };
      spec: {
        containers: Array<{ resources?: { requests?: Record<string, string> }; readinessProbe?: unknown }>;
      };
    };
  };
}

const PVCS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolumeClaim',
  plural: 'persistentvolumeclaims',
  namespaced: true,
};

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

describe('a RelayPolicy through its life', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let controller: Controller;
  let client: KubeClient;
  let reconciles = 0;
  // The relays' admin API cannot run here (no kubelet, no pods): each pod's queue is a
  // number the test sets, asked through the same port the operator uses for GET /queue.
  const queued = new Map<string, number>();
  const queueSource = {
    count: async (target: { url: string }) => {
      const n = queued.get(target.url);
      if (n === undefined) throw new Error(`${target.url} does not answer`);
      return n;
    },
  };

  before(async () => {
    ({ cp, admin } = await startApiServer());
    client = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'operator-a' });
    controller = new Controller({
      client,
      metrics: {
        reconciled: () => {
          reconciles++;
        },
        leading: () => {},
      },
      workers: 2,
      resyncMs: 250,
      queue: { baseDelayMs: 50, maxDelayMs: 500 },
      queueSource,
      drainPollMs: 100,
    });
    controller.start();
  });
  after(async () => {
    await controller?.stop();
    await cp?.stop();
  });

  const policyOf = (ns: string) => admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', ns, 'mail');
  const degraded = async (ns: string) =>
    ((await policyOf(ns))?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === 'Degraded');

  async function namespace(name: string): Promise<string> {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    return name;
  }
  async function policy(ns: string, spec: Record<string, unknown> = {}): Promise<RelayPolicy> {
    return admin.create<RelayPolicy>({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name: 'mail', namespace: ns },
      spec: { hostname: 'relay.example.net', ...spec },
    } as KubeObject);
  }
  async function mergePatch(kind: string, ns: string, name: string, patch: unknown): Promise<void> {
    await cp.kubectl(['patch', `${kind}/${name}`, '-n', ns, '--type=merge', '-p', JSON.stringify(patch)]);
  }
  const stsOf = (ns: string) => admin.get<StatefulSet>('apps/v1', 'StatefulSet', ns, 'mail-relay');
  const claimOf = (ns: string, name: string) => admin.get<Claim>('v1', 'PersistentVolumeClaim', ns, name);
  async function storageClass(name: string, allowVolumeExpansion: boolean): Promise<void> {
    await admin.create({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name },
      provisioner: 'disk.example.com',
      allowVolumeExpansion,
    } as KubeObject);
  }
  /** The spool claims the StatefulSet controller creates, bound as the volume controller would. */
  async function boundClaims(ns: string, sts: StatefulSet): Promise<void> {
    const template = sts.spec.volumeClaimTemplates[0];
    assert.ok(template);
    for (let i = 0; i < (sts.spec.replicas ?? 1); i++) {
      const name = `spool-mail-relay-${i}`;
      await admin.create({
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace: ns, labels: template.metadata.labels },
        spec: { ...template.spec, volumeName: `pv-${ns}-${i}` },
      } as KubeObject);
      await admin.patchStatus(PVCS, ns, name, { phase: 'Bound', capacity: template.spec.resources.requests });
    }
  }
  const spoolSize = (sts: StatefulSet | undefined) =>
    sts?.spec.volumeClaimTemplates[0]?.spec.resources.requests.storage;

  /** The chart's RBAC objects (templates/rbac.yaml), as `helm template` renders them. */
  async function helmTemplate(release: string, args: string[]): Promise<KubeObject[]> {
    const { stdout } = await execFileAsync(binaryPaths().helm, [
      'template',
      'sluice',
      CHART,
      '--namespace',
      release,
      '--show-only',
      'templates/rbac.yaml',
      ...args,
    ]);
    return parseAllDocuments(stdout)
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => o !== null);
  }

  async function eventReasons(ns: string): Promise<string[]> {
    const { items } = await admin.list<KubeObject & { reason?: string; regarding?: { name?: string } }>(
      EVENTS,
      { namespace: ns },
    );
    return items.filter((e) => e.regarding?.name === 'mail').map((e) => e.reason ?? '');
  }

  it('reports an object the API server refuses in Degraded and an Event, and applies the others', async () => {
    const ns = await namespace('refused');
    // an admission policy of the cluster's owner refuses Services in this namespace
    const allowServices = await refuseAtAdmission(admin, {
      name: 'no-services',
      namespace: ns,
      resource: 'services',
      expression: 'false',
      message: 'Services are not allowed here',
      reason: 'Forbidden',
      probe: {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'probe', namespace: ns },
        spec: { ports: [{ port: 1 }] },
      } as KubeObject,
    });

    await policy(ns, { replicas: 1 });
    const c = await waitFor('Degraded=True ApplyFailed', async () => {
      const d = await degraded(ns);
      return d?.reason === 'ApplyFailed' ? d : undefined;
    });
    assert.equal(c.status, 'True');
    assert.match(c.message, /^Service mail-smtp: .*Services are not allowed here/);
    assert.match(c.message, /Service mail-relay-admin: .*Services are not allowed here/);
    // what could be applied was
    for (const [apiVersion, kind, name] of [
      ['v1', 'ConfigMap', 'mail-relay-config'],
      ['apps/v1', 'StatefulSet', 'mail-relay'],
      ['policy/v1', 'PodDisruptionBudget', 'mail-relay'],
    ] as const) {
      assert.ok(await admin.get(apiVersion, kind, ns, name), `${kind} ${name} exists`);
    }
    await waitFor('an ApplyFailed Event', async () => (await eventReasons(ns)).includes('ApplyFailed'));

    // once the cluster allows Services, the retries apply them and Degraded clears
    await allowServices();
    await waitFor(
      'the Services',
      async () => (await admin.get('v1', 'Service', ns, 'mail-smtp')) !== undefined,
    );
    await waitFor('Degraded=False', async () => (await degraded(ns))?.status === 'False');
  });

  it('grows the spool volumes and replaces the StatefulSet leaving its pods; refuses a shrink or another class', async () => {
    const ns = await namespace('spool-grow');
    await storageClass('expandable', true);
    await policy(ns, { replicas: 2, spool: { size: '1Gi', storageClassName: 'expandable' } });
    const first = await waitFor('the StatefulSet', () => stsOf(ns));
    await boundClaims(ns, first);

    await mergePatch('relaypolicy', ns, 'mail', { spec: { spool: { size: '2Gi' } } });
    for (const i of [0, 1]) {
      await waitFor(`claim ${i} to ask for 2Gi`, async () => {
        const c = await claimOf(ns, `spool-mail-relay-${i}`);
        return c?.spec.resources.requests.storage === '2Gi';
      });
    }
    // deleted with propagationPolicy Orphan: the pods are left running
    const deleting = await waitFor('the StatefulSet to be deleted, orphaning its pods', async () => {
      const sts = await stsOf(ns);
      return sts?.metadata.deletionTimestamp ? sts : undefined;
    });
    assert.deepEqual((deleting.metadata as { finalizers?: string[] }).finalizers, ['orphan']);
    // the garbage collector (not running here) releases the pods, then lets the object go
    await mergePatch('statefulset', ns, 'mail-relay', { metadata: { finalizers: null } });
    const replaced = await waitFor('a new StatefulSet', async () => {
      const sts = await stsOf(ns);
      return sts && sts.metadata.uid !== first.metadata.uid && !sts.metadata.deletionTimestamp
        ? sts
        : undefined;
    });
    assert.equal(spoolSize(replaced), '2Gi');
    assert.equal(replaced.spec.replicas, 2);
    await waitFor('Degraded without a spool problem', async () => {
      const d = await degraded(ns);
      return d !== undefined && !/spool/i.test(d.message) && d.reason !== 'ApplyFailed';
    });

    // shrinking or another class is refused when the policy is edited
    await assert.rejects(
      mergePatch('relaypolicy', ns, 'mail', { spec: { spool: { size: '1Gi' } } }),
      /spool\.size cannot shrink/,
    );
    await assert.rejects(
      mergePatch('relaypolicy', ns, 'mail', { spec: { spool: { storageClassName: 'other' } } }),
      /spool\.storageClassName cannot change/,
    );
  });

  it('says so in status when the storage class cannot expand the spool volumes, keeps the spool template and applies the rest', async () => {
    const ns = await namespace('spool-fixed');
    await storageClass('fixed', false);
    await policy(ns, { replicas: 1, spool: { size: '1Gi', storageClassName: 'fixed' } });
    const first = await waitFor('the StatefulSet', () => stsOf(ns));
    await boundClaims(ns, first);
    await mergePatch('relaypolicy', ns, 'mail', {
      spec: { replicas: 2, spool: { size: '5Gi' }, limits: { maxRecipients: 7 } },
    });
    const c = await waitFor('Degraded=True SpoolExpansionFailed', async () => {
      const d = await degraded(ns);
      return d?.reason === 'SpoolExpansionFailed' ? d : undefined;
    });
    assert.equal(c.status, 'True');
    assert.match(
      c.message,
      /^spec\.spool\.size 1Gi → 5Gi: PersistentVolumeClaim spool-mail-relay-0: .*storageclass/,
    );
    assert.match(c.message, /the StatefulSet keeps 1Gi/);
    // the rest of the StatefulSet is applied: the policy is not stuck at its old replicas
    const sts = await waitFor('the StatefulSet at 2 replicas', async () => {
      const s = await stsOf(ns);
      return s?.spec.replicas === 2 ? s : undefined;
    });
    assert.equal(sts?.metadata.uid, first.metadata.uid);
    assert.equal(spoolSize(sts), '1Gi');
    // the rest of the policy is applied
    await waitFor('the new limit in the ConfigMap', async () => {
      const cm = await admin.get<KubeObject & { data?: Record<string, string> }>(
        'v1',
        'ConfigMap',
        ns,
        'mail-relay-config',
      );
      return /maxRecipients: 7/.test(cm?.data?.['config.yaml'] ?? '');
    });
    await waitFor('a SpoolExpansionFailed Event', async () =>
      (await eventReasons(ns)).includes('SpoolExpansionFailed'),
    );
    // done with it: its retries would keep asking for the expansion
    await admin.delete('sluice.dev/v1alpha1', 'RelayPolicy', ns, 'mail');
    await waitFor('the policy to be gone', async () => (await policyOf(ns)) === undefined);
  });

  it('keeps the running pods when autoscaling is switched on, hands replicas to the HPA, and gives it a CPU request', async () => {
    const ns = await namespace('autoscale');
    await policy(ns, { replicas: 5 });
    await waitFor('5 replicas', async () => (await stsOf(ns))?.spec.replicas === 5);
    // every replica count the StatefulSet passes through
    const seen: number[] = [];
    const watch = new Informer<StatefulSet>({
      listWatch: apiListWatch<StatefulSet>(admin, STATEFUL_SETS, { namespace: ns }),
      name: 'statefulsets',
    });
    const record = (sts: StatefulSet) => seen.push(sts.spec.replicas ?? -1);
    watch.on({ add: record, update: record });
    watch.start();
    await watch.synced();
    try {
      await mergePatch('relaypolicy', ns, 'mail', {
        spec: { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 8 } },
      });
      await waitFor('the HPA', () =>
        admin.get('autoscaling/v2', 'HorizontalPodAutoscaler', ns, 'mail-relay'),
      );
      const handed = await waitFor('the operator to let go of spec.replicas', async () => {
        const sts = await stsOf(ns);
        const fields = (
          sts?.metadata as { managedFields?: Array<{ manager: string; fieldsV1?: { 'f:spec'?: object } }> }
        )?.managedFields;
        const operator = fields?.find((f) => f.manager === 'sluice-operator');
        return operator && !('f:replicas' in (operator.fieldsV1?.['f:spec'] ?? {})) ? sts : undefined;
      });
      assert.equal(handed.spec.replicas, 5);
      assert.equal(handed.spec.template.spec.containers[0]?.resources?.requests?.cpu, '100m');

      // the HPA scales (as kube-controller-manager does, through the scale subresource) and the
      // next change that rolls the pods leaves its count alone
      await cp.kubectl(['scale', 'statefulset/mail-relay', '-n', ns, '--replicas=6']);
      const hash = handed.spec.template.metadata.annotations?.['sluice.dev/config-hash'];
      await mergePatch('relaypolicy', ns, 'mail', {
        spec: { listeners: [{ name: 'submission', port: 2587, tls: 'starttls' }] },
      });
      const rolled = await waitFor('the new template', async () => {
        const sts = await stsOf(ns);
        return sts?.spec.template.metadata.annotations?.['sluice.dev/config-hash'] !== hash ? sts : undefined;
      });
      assert.equal(rolled.spec.replicas, 6);
      assert.ok(Math.min(...seen) >= 5, `replica counts seen: ${seen.join(', ')}`);
    } finally {
      await watch.stop();
    }
  });

  it('puts back a field removed by hand and a hand-edited users Secret, then writes nothing', async () => {
    const ns = await namespace('drift-removed');
    await policy(ns, { replicas: 1 });
    type Secret = KubeObject & { data?: Record<string, string> };
    const usersOf = () => admin.get<Secret>('v1', 'Secret', ns, 'mail-relay-users-1-0');
    await waitFor('the StatefulSet and users Secret', async () =>
      Boolean((await stsOf(ns)) && (await usersOf())),
    );
    const users = (await usersOf())?.data?.['users.json'];
    const probe = (sts: StatefulSet | undefined) =>
      (sts?.spec.template.spec.containers[0] as { readinessProbe?: unknown } | undefined)?.readinessProbe;
    const readiness = probe(await stsOf(ns));
    assert.ok(readiness && users);

    // removed fields leave no managed-fields trace; the applied-hash annotation stays as it was
    await cp.kubectl([
      'patch',
      'statefulset/mail-relay',
      '-n',
      ns,
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'remove', path: '/spec/template/spec/containers/0/readinessProbe' }]),
    ]);
    await cp.kubectl([
      'patch',
      'service/mail-smtp',
      '-n',
      ns,
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'remove', path: '/metadata/labels/app.kubernetes.io~1part-of' }]),
    ]);
    await mergePatch('secret', ns, 'mail-relay-users-1-0', {
      data: { 'users.json': Buffer.from('{"users":[]}').toString('base64') },
    });
    await waitFor('the readiness probe put back', async () => probe(await stsOf(ns)) !== undefined);
    assert.deepEqual(probe(await stsOf(ns)), readiness);
    await waitFor('the label put back', async () => {
      const svc = await admin.get('v1', 'Service', ns, 'mail-smtp');
      return svc?.metadata.labels?.['app.kubernetes.io/part-of'] === 'sluice';
    });
    // put back from the SmtpUsers (the hand-over account's hash is made anew: the edit dropped it)
    await waitFor('the users file put back', async () =>
      Buffer.from((await usersOf())?.data?.['users.json'] ?? '', 'base64')
        .toString('utf8')
        .includes('"sluice-internal-handoff"'),
    );

    // and then nothing is written, resync after resync
    const settled = reconciles + 10;
    await waitFor('10 more reconciles', () => reconciles >= settled);
    const writes = client.writesByVerb();
    const start = reconciles;
    await waitFor('20 resync reconciles', () => reconciles >= start + 20);
    assert.deepEqual(client.writesByVerb(), writes);
  });

  it('deletes a policy only once its relays have delivered their queued mail', async () => {
    const ns = await namespace('deleted');
    const created = await policy(ns, { replicas: 2 });
    await waitFor('the queued-mail finalizer', async () => {
      const p = await policyOf(ns);
      return (p?.metadata as { finalizers?: string[] } | undefined)?.finalizers?.includes(
        'sluice.dev/queued-mail',
      );
    });
    await waitFor('the StatefulSet', () => stsOf(ns));
    // two pods run (what the StatefulSet controller would report); one still holds mail
    await admin.patchStatus(STATEFUL_SETS, ns, 'mail-relay', { replicas: 2, readyReplicas: 2 });
    const pod = (i: number) => `http://mail-relay-${i}.mail-relay-headless.${ns}.svc:9587`;
    queued.set(pod(0), 3);
    queued.set(pod(1), 0);

    await admin.delete('sluice.dev/v1alpha1', 'RelayPolicy', ns, 'mail');
    const waiting = await waitFor('Ready=False WaitingForQueues', async () => {
      const p = await policyOf(ns);
      const ready = (p?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === 'Ready');
      return ready?.reason === 'WaitingForQueues' ? ready : undefined;
    });
    assert.match(waiting.message, /^Being deleted: 3 messages queued; the relays keep delivering/);
    assert.equal((await policyOf(ns))?.metadata.uid, created.metadata.uid);

    queued.set(pod(0), 0);
    await waitFor('the policy to be gone', async () => (await policyOf(ns)) === undefined);
    assert.ok((await eventReasons(ns)).includes('QueuesDrained'));
  });

  it('a leader cut off from the API server stops acting before another replica takes over', async () => {
    const proxy = await pausableProxy(new URL(cp.server));
    const transitions: string[] = [];
    const replica = (identity: string, kc: KubeConfig) => {
      const c = new KubeClient(kc, { instance: identity });
      return new Controller({
        client: c,
        namespaces: ['fence-none'],
        metrics: {
          reconciled: () => {},
          leading: (on) => transitions.push(`${identity} ${on ? 'leads' : 'stopped'}`),
        },
        leaderElection: {
          leases: c,
          namespace: 'kube-system',
          name: 'sluice-fence',
          identity,
          leaseDurationMs: 3000,
          renewIntervalMs: 500,
          retryIntervalMs: 200,
          renewDeadlineMs: 2000,
        },
      });
    };
    const direct = loadKubeConfig(cp.kubeconfigPath);
    const throughProxy = new KubeConfig();
    throughProxy.loadFromOptions({
      clusters: direct.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
      users: direct.users,
      contexts: direct.contexts,
      currentContext: direct.currentContext,
    });
    const a = replica('a', throughProxy);
    const b = replica('b', direct);
    try {
      a.start();
      await waitFor('a to lead', () => a.leading);
      b.start();
      await waitFor('b on standby', () => b.readiness().ok);
      // the API server hangs for a: its requests get no answer, and never will in this test
      proxy.pause();
      await waitFor('b to lead', () => b.leading);
      assert.equal(a.leading, false);
      assert.deepEqual(transitions.slice(0, 3), ['a leads', 'a stopped', 'b leads']);
    } finally {
      proxy.close();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it("watches the namespaces of WATCH_NAMESPACE=a,b with the chart's namespaced RBAC only", async () => {
    // only the operator below acts from here on
    await controller.stop();
    const [a, b] = [await namespace('team-a'), await namespace('team-b')];
    const release = await namespace('sluice-system');
    const rendered = await helmTemplate(release, ['--set', `operator.watchNamespaces={${a},${b}}`]);
    const kinds = rendered.map((o) => `${o.kind} ${o.metadata.namespace ?? ''}`);
    assert.ok(!kinds.some((k) => k.startsWith('ClusterRole')), `no cluster-wide RBAC: ${kinds.join(', ')}`);
    for (const obj of rendered) await admin.create(obj);
    const binding = rendered.find((o) => o.kind === 'RoleBinding') as KubeObject & {
      subjects: Array<{ name: string }>;
    };
    const account = binding.subjects[0]?.name ?? '';
    const kubeconfig = await cp.serviceAccountKubeconfig(release, account);

    const scoped = new Controller({
      client: new KubeClient(loadKubeConfig(kubeconfig), { instance: 'operator-scoped' }),
      namespaces: parseNamespaces(`${a},${b}`),
      workers: 2,
      resyncMs: 250,
      queue: { baseDelayMs: 50, maxDelayMs: 500 },
      leaderElection: {
        namespace: release,
        name: 'sluice-operator',
        identity: 'operator-scoped',
        leaseDurationMs: 3000,
        renewIntervalMs: 500,
        retryIntervalMs: 200,
        renewDeadlineMs: 2000,
      },
    });
    scoped.start();
    try {
      for (const ns of [a, b]) {
        await policy(ns, { replicas: 1 });
        const c = await waitFor(`the status in ${ns}`, () => degraded(ns));
        assert.notEqual(c.reason, 'ApplyFailed', c.message);
        assert.ok(await stsOf(ns), `the StatefulSet in ${ns}`);
      }
    } finally {
      await scoped.stop();
    }
  });
});

/**
 * A TCP proxy to the API server that can stop forwarding: what a leader sees when the API
 * server hangs or the network between them does (requests sent, no answer).
 */
async function pausableProxy(target: URL): Promise<{ port: number; pause(): void; close(): void }> {
  const sockets = new Set<Socket>();
  let paused = false;
  const server = createServer((client) => {
    sockets.add(client);
    if (paused) {
      client.pause();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    pause() {
      paused = true;
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
