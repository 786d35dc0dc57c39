// A StatefulSet's volumeClaimTemplates cannot be changed in place, so a new spool size is
// applied in three steps: each existing spool PVC is expanded (the API server allows it
// only where the StorageClass has allowVolumeExpansion), then the StatefulSet is deleted
// with propagationPolicy Orphan (its pods keep running and relaying), and the next
// reconcile creates it again with the new template; it adopts the running pods by their
// labels. A smaller size or another storage class cannot be done to existing volumes: the
// CRD refuses such an edit (x-kubernetes-validations), and a policy that got past that
// (an older CRD) is reported here instead of failing on every retry.
import type { RelayPolicy } from '../api/types.ts';
import { names, selectorString } from '../build/names.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { PERSISTENT_VOLUME_CLAIMS } from '../kube/resources.ts';

interface ClaimSpec {
  storageClassName?: string;
  resources?: { requests?: { storage?: string } };
}

export interface SpoolTemplateHolder extends KubeObject {
  spec?: { volumeClaimTemplates?: Array<{ metadata?: { name?: string }; spec?: ClaimSpec }> };
}

interface Claim extends KubeObject {
  spec?: ClaimSpec;
}

export type SpoolChange =
  | { type: 'none' }
  | { type: 'expand'; from: string; to: string }
  | { type: 'refused'; message: string };

function spoolClaim(sts: SpoolTemplateHolder | undefined): ClaimSpec | undefined {
  return sts?.spec?.volumeClaimTemplates?.find((t) => t.metadata?.name === 'spool')?.spec;
}

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity (10Gi, 500M, 1.5T) in bytes; NaN when it is not one. */
export function quantityBytes(quantity: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$/.exec(quantity.trim());
  const factor = m ? SUFFIX[m[2] ?? ''] : undefined;
  return m && factor !== undefined ? Number(m[1]) * factor : Number.NaN;
}

/** The StatefulSet with its spool template asking for `size` (the live size, kept). */
export function withSpoolSize<T extends SpoolTemplateHolder>(sts: T, size: string): T {
  const templates = sts.spec?.volumeClaimTemplates?.map((t) =>
    t.metadata?.name === 'spool'
      ? {
          ...t,
          spec: {
            ...t.spec,
            resources: { ...t.spec?.resources, requests: { ...t.spec?.resources?.requests, storage: size } },
          },
        }
      : t,
  );
  return { ...sts, spec: { ...sts.spec, volumeClaimTemplates: templates } };
}

/** What changing the live StatefulSet's spool template into the desired one takes. */
export function spoolChange(
  live: SpoolTemplateHolder | undefined,
  desired: SpoolTemplateHolder,
): SpoolChange {
  const before = spoolClaim(live);
  const after = spoolClaim(desired);
  if (!before || !after) return { type: 'none' };
  const from = before.resources?.requests?.storage ?? '';
  const to = after.resources?.requests?.storage ?? '';
  if ((before.storageClassName ?? '') !== (after.storageClassName ?? '')) {
    return {
      type: 'refused',
      message: `spec.spool.storageClassName cannot change from "${before.storageClassName ?? ''}" to "${after.storageClassName ?? ''}": existing spool volumes keep their class; the StatefulSet is left as it is`,
    };
  }
  if (from === to || !from || !to) return { type: 'none' };
  if (quantityBytes(to) < quantityBytes(from)) {
    return {
      type: 'refused',
      message: `spec.spool.size cannot shrink from ${from} to ${to}: volumes do not shrink; the StatefulSet is left as it is`,
    };
  }
  // equal, or not a quantity (then the apply fails with the API server's own message)
  if (!(quantityBytes(to) > quantityBytes(from))) return { type: 'none' };
  return { type: 'expand', from, to };
}

/** The spool PVCs of a policy's StatefulSet that are smaller than `size`. */
export async function claimsToExpand(
  client: KubeClient,
  policy: RelayPolicy,
  size: string,
): Promise<Claim[]> {
  const prefix = `spool-${names(policy).statefulSet}-`;
  const { items } = await client.list<Claim>(PERSISTENT_VOLUME_CLAIMS, {
    namespace: policy.metadata.namespace ?? '',
    labelSelector: selectorString(policy),
  });
  return items.filter((c) => {
    const requested = c.spec?.resources?.requests?.storage;
    return (
      c.metadata.name.startsWith(prefix) && (!requested || quantityBytes(requested) < quantityBytes(size))
    );
  });
}

/** Asks for a larger spool volume (the storage driver grows it). */
export function expandClaim(client: KubeClient, claim: Claim, size: string): Promise<KubeObject> {
  return client.mergePatch(
    { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: claim.metadata },
    { spec: { resources: { requests: { storage: size } } } },
  );
}
