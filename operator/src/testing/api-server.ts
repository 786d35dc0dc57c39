// Test support: a real kube-apiserver + etcd (control-plane.ts) with the CRDs
// installed, an admin client, and waiting for a condition with a deadline. No kubelet
// and no kube-controller-manager run there: nothing starts pods, nothing writes a
// StatefulSet's status, and no garbage collector deletes owned objects.
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { parseAllDocuments } from 'yaml';
import { KubeClient, type KubeObject, loadKubeConfig } from '../kube/client.ts';
import { type ControlPlane, skipUnlessBuilt, startControlPlane } from './control-plane.ts';

export type { ControlPlane };

const CRD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'crds');

/** A node:test skip reason when the control-plane binaries are not built, else false. */
export function apiServerSkip(): string | false {
  const skip = skipUnlessBuilt(['kube-apiserver', 'etcd', 'kubectl']);
  if (skip) console.log(`# SKIP API-server tests: ${skip}`);
  return skip;
}

export async function startApiServer(): Promise<{ cp: ControlPlane; admin: KubeClient }> {
  // the endpoint reconciler refuses a loopback advertise address; nothing here needs it
  const cp = await startControlPlane({
    apiServerArgs: [
      '--endpoint-reconciler-type=none',
      // on in OpenShift: an owner reference with blockOwnerDeletion needs update on the
      // owner's finalizers, which the chart's RBAC must grant
      '--enable-admission-plugins=OwnerReferencesPermissionEnforcement',
    ],
  });
  try {
    const admin = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { fieldManager: 'test-admin' });
    await installCrds(admin);
    return { cp, admin };
  } catch (err: unknown) {
    await cp.stop();
    throw err;
  }
}

type Schema = {
  type?: string;
  default?: unknown;
  properties?: Record<string, Schema>;
  items?: Schema;
  'x-kubernetes-validations'?: unknown[];
};

/** Applies crds/*.yaml and waits until the API server serves them. */
export async function installCrds(admin: KubeClient): Promise<void> {
  const files = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).sort();
  const kinds: string[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(await readFile(join(CRD_DIR, file), 'utf8'))) {
      const crd = doc.toJS() as KubeObject & {
        spec: { versions: Array<{ schema: { openAPIV3Schema: Schema } }> };
      };
      // the CRDs exactly as shipped: a refusal here is a bug in the generator
      await admin.apply(crd);
      kinds.push((crd.spec as unknown as { names: { kind: string } }).names.kind);
    }
  }
  // each CRD on its own: the group is served as soon as the first of them is
  await waitFor(
    'the CRDs to be served',
    async () => (await admin.servesKinds('sluice.dev/v1alpha1', kinds)) || undefined,
  );
}

/**
 * Makes the API server refuse writes of one core/v1 resource in a namespace, as a cluster
 * owner's admission policy would: a ValidatingAdmissionPolicy whose CEL `expression` must
 * hold (else `message`), bound to the namespace. Resolves once creating `probe` is refused
 * (a probe accepted meanwhile is deleted again); the returned function lifts the refusal.
 */
export async function refuseAtAdmission(
  admin: KubeClient,
  o: {
    name: string;
    namespace: string;
    resource: string;
    expression: string;
    message: string;
    reason?: string;
    probe: KubeObject;
  },
): Promise<() => Promise<void>> {
  await admin.create({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name: o.name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: {
        resourceRules: [
          { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: [o.resource] },
        ],
      },
      validations: [
        { expression: o.expression, message: o.message, ...(o.reason ? { reason: o.reason } : {}) },
      ],
    },
  } as KubeObject);
  await admin.create({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name: o.name },
    spec: {
      policyName: o.name,
      validationActions: ['Deny'],
      matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': o.namespace } } },
    },
  } as KubeObject);
  // the binding takes effect once the API server has loaded it
  const { apiVersion = 'v1', kind = '', metadata } = o.probe;
  await waitFor(`the admission policy ${o.name} to refuse ${kind} ${metadata.name}`, async () => {
    try {
      await admin.create(o.probe);
      await admin.delete(apiVersion, kind, o.namespace, metadata.name);
      return false;
    } catch {
      return true;
    }
  });
  return async () => {
    await admin.delete(
      'admissionregistration.k8s.io/v1',
      'ValidatingAdmissionPolicyBinding',
      undefined,
      o.name,
    );
  };
}
