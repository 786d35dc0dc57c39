// Which of the SmtpUsers naming a policy it accepts: all of them, or those whose labels
// match spec.userSelector (a standard Kubernetes label selector). Pure.
import type { RelayPolicy, SmtpUser } from '../api/types.ts';
import type { Outcome } from './smtp-user.ts';

export type LabelSelector = NonNullable<RelayPolicy['spec']['userSelector']>;

/** Whether `labels` match the selector, as the API server's label selectors do (an empty selector matches all). */
export function matchesSelector(
  labels: Record<string, string> | undefined,
  selector: LabelSelector,
): boolean {
  const l = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (l[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(l, key);
    const ok =
      operator === 'In'
        ? has && values.includes(l[key] as string)
        : operator === 'NotIn'
          ? !has || !values.includes(l[key] as string)
          : operator === 'Exists'
            ? has
            : !has;
    if (!ok) return false;
  }
  return true;
}

/** The selector as kubectl writes one (`tier=gold,region in (eu,us),!legacy`). */
export function selectorText(selector: LabelSelector): string {
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    if (operator === 'In') parts.push(`${key} in (${values.join(',')})`);
    else if (operator === 'NotIn') parts.push(`${key} notin (${values.join(',')})`);
    else if (operator === 'Exists') parts.push(key);
    else parts.push(`!${key}`);
  }
  return parts.join(',');
}

/** The policy's users split into those it accepts and those its userSelector leaves out. */
export function selectUsers(
  policy: RelayPolicy,
  users: readonly SmtpUser[],
): { selected: SmtpUser[]; unselected: SmtpUser[] } {
  const selector = policy.spec.userSelector;
  if (!selector) return { selected: [...users], unselected: [] };
  const selected: SmtpUser[] = [];
  const unselected: SmtpUser[] = [];
  for (const u of users) (matchesSelector(u.metadata.labels, selector) ? selected : unselected).push(u);
  return { selected, unselected };
}

export function notSelected(policy: RelayPolicy): Outcome {
  const selector = policy.spec.userSelector;
  return {
    ok: false,
    reason: 'NotSelected',
    message: `RelayPolicy ${policy.metadata.name} accepts only SmtpUsers whose labels match ${selector ? selectorText(selector) : ''} (spec.userSelector); label this user to match, or change the selector`,
  };
}
