// A RelayPolicy through its life on a real kube-apiserver and etcd: objects the API
// server refuses, changes that cannot be applied in place, autoscaling switched on and
// off. As in controller.test.ts no kube-controller-manager runs, so the tests write what
// it would (a StatefulSet's status, a PersistentVolumeClaim's binding).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RelayPolicy } from '../api/types.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../kube/client.ts';
import type { ResourceType } from '../kube/resources.ts';
import { apiServerSkip, type ControlPlane, startApiServer, waitFor } from '../testing/api-server.ts';
import { Controller } from './controller.ts';

const skip = apiServerSkip();

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

describe('a RelayPolicy through its life', { skip, timeout: 300_000 }, () => {
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
    await admin.create({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'no-services' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [''],
              apiVersions: ['v1'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['services'],
            },
          ],
        },
        validations: [{ expression: 'false', message: 'Services are not allowed here', reason: 'Forbidden' }],
      },
    } as KubeObject);
    await admin.create({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: 'no-services' },
      spec: {
        policyName: 'no-services',
        validationActions: ['Deny'],
        matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } },
      },
    } as KubeObject);
    // the binding takes effect once the API server has loaded it
    await waitFor('the admission policy to refuse Services', async () => {
      try {
        await admin.create({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'probe', namespace: ns },
          spec: { ports: [{ port: 1 }] },
        } as KubeObject);
        await admin.delete('v1', 'Service', ns, 'probe');
        return false;
      } catch {
        return true;
      }
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
    await admin.delete(
      'admissionregistration.k8s.io/v1',
      'ValidatingAdmissionPolicyBinding',
      undefined,
      'no-services',
    );
    await waitFor(
      'the Services',
      async () => (await admin.get('v1', 'Service', ns, 'mail-smtp')) !== undefined,
    );
    await waitFor('Degraded=False', async () => (await degraded(ns))?.status === 'False');
  });
});
