// The relays' StatefulSet, the one owned object that cannot always be applied in place:
// a new spool size (volumeClaimTemplates are immutable) expands the PVCs and replaces the
// StatefulSet without stopping its pods, and with autoscaling on spec.replicas is handed
// to the HPA without the pod count dropping on the way.

import type { RelayPolicy } from '../api/types.ts';
import { names } from '../build/names.ts';
import { toKubeApiError } from '../kube/api-error.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { ApplySteps, ReconcileLogger } from './apply-steps.ts';
import type { StatefulSetState } from './policy-status.ts';
import {
  claimsToExpand,
  expandClaim,
  type SpoolTemplateHolder,
  spoolChange,
  withSpoolSize,
} from './spool-resize.ts';

export interface StatefulSetObject extends KubeObject {
  spec?: { replicas?: number };
  status?: Omit<StatefulSetState, 'generation'>;
}

/** Holds spec.replicas between the operator letting go of it and the HPA's first scale. */
export const REPLICAS_HANDOVER_MANAGER = 'sluice-operator-replicas-handover';

/** Whether `manager`'s server-side apply holds the StatefulSet's spec.replicas. */
function appliesReplicas(live: KubeObject, manager: string): boolean {
  const entries =
    (
      live.metadata as {
        managedFields?: Array<{ manager?: string; operation?: string; fieldsV1?: Record<string, unknown> }>;
      }
    ).managedFields ?? [];
  return entries.some((e) => {
    const spec = e.fieldsV1?.['f:spec'] as Record<string, unknown> | undefined;
    return e.manager === manager && e.operation === 'Apply' && spec?.['f:replicas'] !== undefined;
  });
}

/**
 * Applies the StatefulSet, or, when its spool template changed (which the API server
 * does not allow in place), expands the spool PVCs and deletes the StatefulSet leaving
 * its pods running; its delete event brings the next reconcile, which creates it anew.
 */
export async function applyStatefulSet(
  client: KubeClient,
  steps: ApplySteps,
  policy: RelayPolicy,
  desired: KubeObject,
  log?: ReconcileLogger,
): Promise<StatefulSetObject | undefined> {
  const { namespace = '' } = policy.metadata;
  const { name } = desired.metadata;
  const live = await client.get<StatefulSetObject & SpoolTemplateHolder>(
    'apps/v1',
    'StatefulSet',
    namespace,
    name,
  );
  // the old one is still being deleted (its pods being orphaned): created again once it is gone
  if (live?.metadata.deletionTimestamp) return live;
  const change = spoolChange(live, desired as SpoolTemplateHolder);
  if (change.type === 'none') {
    const handed = await handReplicasToHpa(client, steps, policy, desired, live);
    return handed ? steps.apply<StatefulSetObject>(handed, live ?? null) : live;
  }
  if (change.type === 'refused') {
    steps.failures.push({
      reason: 'SpoolChangeRefused',
      message: `StatefulSet ${name}: ${change.message}`,
    });
    return live;
  }
  const claims = await steps.attempt('PersistentVolumeClaims', () =>
    claimsToExpand(client, policy, change.to),
  );
  if (!claims) return live;
  const refused: string[] = [];
  for (const claim of claims) {
    try {
      await expandClaim(client, claim, change.to);
    } catch (err: unknown) {
      const e = toKubeApiError(err);
      if (e.status === 0) throw e;
      refused.push(`PersistentVolumeClaim ${claim.metadata.name}: ${e.message}`);
    }
  }
  if (refused.length > 0) {
    steps.failures.push({
      reason: 'SpoolExpansionFailed',
      message: `spec.spool.size ${change.from} → ${change.to}: ${refused.join('; ')}; the StatefulSet keeps ${change.from} until its volumes can grow (a StorageClass with allowVolumeExpansion)`,
    });
    // everything else in the StatefulSet (replicas, image, pod template) still applies
    const kept = withSpoolSize(desired as SpoolTemplateHolder, change.from);
    const handed = await handReplicasToHpa(client, steps, policy, kept, live);
    return handed ? steps.apply<StatefulSetObject>(handed, live ?? null) : live;
  }
  await steps.attempt(`StatefulSet ${name}`, () =>
    client.delete('apps/v1', 'StatefulSet', namespace, name, {
      propagationPolicy: 'Orphan',
      ...(live?.metadata.uid ? { uid: live.metadata.uid } : {}),
    }),
  );
  log?.info(
    { relayPolicy: `${namespace}/${policy.metadata.name}`, from: change.from, to: change.to },
    'spool volumes expanded; replacing the StatefulSet, its pods keep running',
  );
  return live;
}

/**
 * With autoscaling on, the HPA owns spec.replicas and the operator's StatefulSet leaves it
 * out. Leaving out a field the operator applied would remove it (back to 1 pod), so, as
 * the Kubernetes docs advise for handing replicas to an HPA, another field manager first
 * applies the current count (within min and max), then the operator lets go. A new
 * StatefulSet starts at the HPA's last wish or the minimum. Returns the StatefulSet to
 * apply, or undefined when the hand-over could not be written.
 */
async function handReplicasToHpa(
  client: KubeClient,
  steps: ApplySteps,
  policy: RelayPolicy,
  desired: KubeObject,
  live: StatefulSetObject | undefined,
): Promise<KubeObject | undefined> {
  const { autoscaling } = policy.spec;
  if (!autoscaling.enabled) return desired;
  const { namespace = '' } = policy.metadata;
  const { name } = desired.metadata;
  const within = (n: number) => Math.min(Math.max(n, autoscaling.minReplicas), autoscaling.maxReplicas);
  if (!live) {
    const hpa = await client.get<KubeObject & { status?: { desiredReplicas?: number } }>(
      'autoscaling/v2',
      'HorizontalPodAutoscaler',
      namespace,
      names(policy).hpa,
    );
    const spec = (desired as { spec?: Record<string, unknown> }).spec ?? {};
    const replicas = within(hpa?.status?.desiredReplicas ?? autoscaling.minReplicas);
    return { ...desired, spec: { ...spec, replicas } } as KubeObject;
  }
  if (!appliesReplicas(live, client.fieldManager)) return desired;
  const replicas = within(live.spec?.replicas ?? autoscaling.minReplicas);
  const handed = await steps.attempt(`StatefulSet ${name}`, () =>
    client.apply(
      {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name, namespace },
        spec: { replicas },
      } as KubeObject,
      { fieldManager: REPLICAS_HANDOVER_MANAGER },
    ),
  );
  return handed ? desired : undefined;
}

/** Whether every pod runs the StatefulSet's current template (then a users set it no longer mounts can go). */
export function rolledOut(sts: StatefulSetObject | undefined): boolean {
  const status = sts?.status;
  if (!sts || !status) return false;
  return (
    status.observedGeneration === sts.metadata.generation &&
    status.currentRevision !== undefined &&
    status.currentRevision === status.updateRevision &&
    (status.updatedReplicas ?? 0) === (status.replicas ?? 0)
  );
}
