// The queued-mail finalizer of a RelayPolicy (see deletion.ts): set on a live policy, and
// on a deleted one held until its relays' queues are empty or the deadline passed, with
// the Ready condition saying what it waits for and an Event saying how it ended.
import { withPolicyDefaults } from '../api/defaults.ts';
import type { RelayPolicy } from '../api/types.ts';
import { names } from '../build/names.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { ReconcileLogger } from './apply-steps.ts';
import { type ConditionInput, type LiveCondition, mergeConditions } from './conditions.ts';
import {
  DEFAULT_DELETION_DRAIN_MS,
  drainVerdict,
  podQueueTargets,
  QUEUED_MAIL_FINALIZER,
  type QueueSource,
} from './deletion.ts';
import { type SecretObject, secretValue } from './policy-inputs.ts';
import type { StatefulSetObject } from './statefulset-apply.ts';
import type { StatusWriter } from './status-writer.ts';

export function finalizersOf(obj: KubeObject): string[] {
  return (obj.metadata as { finalizers?: string[] }).finalizers ?? [];
}

/** Sets the policy's finalizers; fails with Conflict when it changed since it was read. */
export async function setFinalizers(
  client: KubeClient,
  policy: RelayPolicy,
  finalizers: string[],
): Promise<void> {
  await client.mergePatch(policy, {
    metadata: { finalizers, resourceVersion: policy.metadata.resourceVersion },
  });
}

export interface FinishDeletionContext {
  client: KubeClient;
  status: StatusWriter;
  events: EventRecorder;
  queues: QueueSource | undefined;
  now: () => number;
  deletionDrainMs?: number;
  drainPollMs?: number;
  log?: ReconcileLogger;
}

/**
 * A deleted policy: waits for its relays' queues (Ready False says why, and it is asked
 * again after drainPollMs), then lets it go. Returns when to reconcile again, if at all.
 */
export async function finishDeletion(
  ctx: FinishDeletionContext,
  cached: RelayPolicy,
): Promise<{ changed: number; statusWritten: boolean; requeueAfterMs?: number }> {
  const { client } = ctx;
  const policy = withPolicyDefaults(cached);
  const { namespace = '' } = policy.metadata;
  const n = names(policy);
  const [sts, internal] = await Promise.all([
    client.get<StatefulSetObject>('apps/v1', 'StatefulSet', namespace, n.statefulSet),
    client.get<SecretObject>('v1', 'Secret', namespace, n.internalSecret),
  ]);
  const pods = sts?.status?.replicas ?? 0;
  const token = secretValue(internal, 'admin-token') ?? '';
  const counts = await Promise.all(
    podQueueTargets(policy, pods, token).map((t) => ctx.queues?.count(t).catch(() => undefined)),
  );
  const deadline =
    Date.parse(cached.metadata.deletionTimestamp ?? '') + (ctx.deletionDrainMs ?? DEFAULT_DELETION_DRAIN_MS);
  const verdict = drainVerdict(counts, ctx.now(), deadline);
  if (!verdict.done) {
    const live = { ...cached, status: cached.status as Record<string, unknown> | undefined };
    const previous = (ctx.status.current(live) as { conditions?: LiveCondition[] } | undefined)?.conditions;
    const ready = {
      type: 'Ready' as const,
      status: 'False' as const,
      reason: verdict.reason,
      message: verdict.message,
      observedGeneration: policy.metadata.generation ?? 0,
    };
    const others = (previous ?? []).filter((c) => c.type !== 'Ready') as ConditionInput[];
    const conditions = mergeConditions(previous, [ready, ...others], new Date(ctx.now()).toISOString());
    const statusWritten = await ctx.status.write(live, { conditions });
    return { changed: 0, statusWritten, requeueAfterMs: ctx.drainPollMs ?? 10_000 };
  }
  await ctx.events.record(
    cached,
    verdict.drained ? 'Normal' : 'Warning',
    verdict.reason,
    verdict.message,
    'Delete',
  );
  await setFinalizers(
    client,
    cached,
    finalizersOf(cached).filter((f) => f !== QUEUED_MAIL_FINALIZER),
  );
  ctx.log?.info(
    { relayPolicy: `${namespace}/${policy.metadata.name}`, reason: verdict.reason },
    verdict.message,
  );
  return { changed: 1, statusWritten: false };
}
