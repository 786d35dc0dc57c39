// The status of a RelayPolicy from what the reconcile found: pure, so each message a
// platform team reads is tested without an API server.
import type { RelayPolicy } from '../api/types.ts';
import { type ConditionInput, type LiveCondition, mergeConditions } from './conditions.ts';

export type RelayPolicyStatus = NonNullable<RelayPolicy['status']>;

export interface StatefulSetState {
  generation?: number;
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  currentRevision?: string;
  updateRevision?: string;
}

export interface PolicyFacts {
  generation: number;
  /** Pods wanted: spec.replicas, or the StatefulSet's count when the HPA owns it */
  desiredReplicas: number;
  /** Whether the policy could run on more than one pod (replicas or autoscaling max) */
  multiplePods: boolean;
  /** Whether a pod may run more than one relay process (spec.workers other than 1) */
  multipleWorkers?: boolean;
  sharedState: boolean;
  statefulSet?: StatefulSetState;
  /** The relay refuses the config built from the policy */
  configError?: string;
  /** What could not be applied: a CamelCase reason and "Kind name: the API server's message" */
  applyFailures?: ReadonlyArray<{ reason: string; message: string }>;
  /** Secrets the policy names that do not exist, one readable line each */
  missingSecrets: readonly string[];
  rejectedUsers: ReadonlyArray<{ name: string; reason: string }>;
  userCount: number;
  selector: string;
  /** The operator's release and the image its relay pods are given */
  versions?: { operator: string; relayImage: string };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function readyCondition(f: PolicyFacts, ready: number): ConditionInput {
  const base = { type: 'Ready' as const, observedGeneration: f.generation };
  if (f.configError) {
    return {
      ...base,
      status: 'False',
      reason: 'ConfigInvalid',
      message: `The relay refuses the configuration built from this RelayPolicy; running pods keep the last good one: ${f.configError}`,
    };
  }
  if (f.desiredReplicas === 0) {
    return {
      ...base,
      status: 'False',
      reason: 'ScaledToZero',
      message: 'spec.replicas is 0: no relay pod runs; scale up to relay mail',
    };
  }
  const message = `${ready} of ${plural(f.desiredReplicas, 'relay pod')} ready`;
  return ready >= f.desiredReplicas
    ? { ...base, status: 'True', reason: 'PodsReady', message }
    : { ...base, status: 'False', reason: 'PodsNotReady', message };
}

function progressingCondition(f: PolicyFacts, ready: number): ConditionInput {
  const base = { type: 'Progressing' as const, observedGeneration: f.generation };
  if (f.configError) {
    return {
      ...base,
      status: 'False',
      reason: 'ConfigInvalid',
      message: 'Nothing is rolled out until the configuration is fixed',
    };
  }
  const sts = f.statefulSet ?? {};
  const behind =
    (sts.generation !== undefined &&
      sts.observedGeneration !== undefined &&
      sts.observedGeneration < sts.generation) ||
    (sts.updateRevision !== undefined &&
      sts.currentRevision !== undefined &&
      sts.updateRevision !== sts.currentRevision) ||
    (sts.updatedReplicas !== undefined && sts.updatedReplicas < f.desiredReplicas);
  if (behind) {
    return {
      ...base,
      status: 'True',
      reason: 'RollingUpdate',
      message: `${sts.updatedReplicas ?? 0} of ${plural(f.desiredReplicas, 'relay pod')} run the current configuration`,
    };
  }
  if ((sts.replicas ?? 0) !== f.desiredReplicas || ready < f.desiredReplicas) {
    return {
      ...base,
      status: 'True',
      reason: 'Scaling',
      message: `Scaling to ${plural(f.desiredReplicas, 'relay pod')}: ${sts.replicas ?? 0} exist, ${ready} ready`,
    };
  }
  return {
    ...base,
    status: 'False',
    reason: 'UpToDate',
    message: `All ${plural(f.desiredReplicas, 'relay pod')} run the current configuration`,
  };
}

function degradedCondition(f: PolicyFacts): ConditionInput {
  const base = { type: 'Degraded' as const, observedGeneration: f.generation };
  const issues: Array<{ reason: string; message: string }> = [];
  issues.push(...(f.applyFailures ?? []));
  if (f.configError) issues.push({ reason: 'ConfigInvalid', message: f.configError });
  for (const m of f.missingSecrets) issues.push({ reason: 'SecretNotFound', message: m });
  if (f.rejectedUsers.length > 0) {
    const list = f.rejectedUsers.map((u) => `${u.name} (${u.reason})`).join(', ');
    issues.push({
      reason: 'UsersRejected',
      message: `${plural(f.rejectedUsers.length, 'SmtpUser')} not in the users file: ${list}; see their status`,
    });
  }
  if (f.multiplePods && !f.sharedState) {
    issues.push({
      reason: 'NoSharedState',
      message: 'replicas > 1 without spec.redis: each pod counts rate limits alone',
    });
  }
  if (f.multipleWorkers && !f.sharedState) {
    issues.push({
      reason: 'NoSharedState',
      message: 'workers other than 1 without spec.redis: each relay process counts rate limits alone',
    });
  }
  const first = issues[0];
  if (!first) return { ...base, status: 'False', reason: 'AsExpected', message: 'No problems found' };
  return { ...base, status: 'True', reason: first.reason, message: issues.map((i) => i.message).join('; ') };
}

/** The status to write; `previous` keeps the lastTransitionTime of unchanged conditions. */
export function policyStatus(
  facts: PolicyFacts,
  previous: readonly LiveCondition[] | undefined,
  now: string,
): Required<
  Pick<
    RelayPolicyStatus,
    'observedGeneration' | 'conditions' | 'replicas' | 'readyReplicas' | 'userCount' | 'selector'
  >
> &
  Pick<RelayPolicyStatus, 'operatorVersion' | 'relayImage'> {
  const ready = facts.statefulSet?.readyReplicas ?? 0;
  return {
    observedGeneration: facts.generation,
    conditions: mergeConditions(
      previous,
      [readyCondition(facts, ready), progressingCondition(facts, ready), degradedCondition(facts)],
      now,
    ),
    replicas: facts.statefulSet?.replicas ?? 0,
    readyReplicas: ready,
    userCount: facts.userCount,
    selector: facts.selector,
    ...(facts.versions
      ? { operatorVersion: facts.versions.operator, relayImage: facts.versions.relayImage }
      : {}),
  };
}
