// Kubernetes-style conditions: lastTransitionTime changes only when a condition's status
// does, so a reconcile that finds the same state writes the same status (and nothing).
import type { Condition } from '../api/types.ts';
import { stableStringify } from './applied-hash.ts';

export type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

/** A condition as read back from the API server (its type is any string there). */
export interface LiveCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime: string;
}

/** The next conditions, keeping each one's lastTransitionTime while its status holds. */
export function mergeConditions(
  previous: readonly LiveCondition[] | undefined,
  next: readonly ConditionInput[],
  now: string,
): Condition[] {
  return next.map((c) => {
    const before = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : now;
    return { ...c, lastTransitionTime };
  });
}

export function findCondition(
  conditions: readonly LiveCondition[] | undefined,
  type: Condition['type'],
): LiveCondition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Whether `live` already holds every field of `desired` with the same value. */
export function statusHolds(
  desired: Record<string, unknown>,
  live: Record<string, unknown> | undefined,
): boolean {
  if (!live) return false;
  return Object.keys(desired).every((k) => stableStringify(desired[k]) === stableStringify(live[k]));
}
