// What an SmtpUser's status says about its usage and about abuse, from what the relays
// report (usage/relay-usage.ts). Pure. Every text here is fixed at detection time, so an
// unchanged situation gives an unchanged status and nothing is written.
import type { Outcome } from '../build/users.ts';
import {
  DELIVERY_RESULTS,
  type DeliveryNumbers,
  type DeliveryResult,
  type PolicyUsage,
} from '../usage/relay-usage.ts';
import type { ConditionInput } from './conditions.ts';

/** status.usage: today's usage (UTC). Refusals are a list, so a merge patch replaces them whole. */
export interface SmtpUserUsage {
  date: string;
  messages: number;
  recipients: number;
  bytes: number;
  rejected: number;
  authentications: number;
  distinctClientIps: number;
  rejections: Array<{ reason: string; count: number }>;
  deliveries: UserDeliveries;
}

/**
 * Today's recipient delivery attempts by result, and by result and the class of the remote
 * reply (invalid-recipient, rate-limited, …): what the helpdesk reads to answer "where is
 * my mail?". The classes are a list, so a merge patch replaces them whole.
 */
export interface UserDeliveries {
  delivered: number;
  deferred: number;
  bounced: number;
  classes: Array<{ result: DeliveryResult; class: string; count: number }>;
}

export function userUsage(username: string, usage: PolicyUsage): SmtpUserUsage {
  const u = usage.today.get(username);
  return {
    date: usage.date,
    messages: u?.messages ?? 0,
    recipients: u?.recipients ?? 0,
    bytes: u?.bytes ?? 0,
    rejected: u?.rejected ?? 0,
    authentications: u?.authentications ?? 0,
    distinctClientIps: u?.distinctClientIps ?? 0,
    rejections: Object.entries(u?.rejections ?? {})
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([reason, count]) => ({ reason, count })),
    deliveries: userDeliveries(u?.deliveries),
  };
}

function userDeliveries(d: DeliveryNumbers | undefined): UserDeliveries {
  const classes: UserDeliveries['classes'] = [];
  for (const result of DELIVERY_RESULTS) {
    for (const [cls, count] of Object.entries(d?.[result].classes ?? {}).sort(([a], [b]) =>
      a < b ? -1 : 1,
    )) {
      classes.push({ result, class: cls, count });
    }
  }
  return {
    delivered: d?.delivered.total ?? 0,
    deferred: d?.deferred.total ?? 0,
    bounced: d?.bounced.total ?? 0,
    classes,
  };
}

/** The live suspension the relays enforce for this user, if any. */
function suspensionOf(username: string, usage: PolicyUsage) {
  return usage.autoSuspend ? usage.suspended.find((s) => s.user === username) : undefined;
}

/** The AbuseSuspected condition: True with the first flag's reason (CamelCase), or False. */
export function abuseCondition(username: string, usage: PolicyUsage, generation: number): ConditionInput {
  const base = { type: 'AbuseSuspected' as const, observedGeneration: generation };
  const flags = usage.flags.filter((f) => f.user === username);
  const suspension = suspensionOf(username, usage);
  const first = flags[0] ?? suspension;
  if (!first) {
    return { ...base, status: 'False', reason: 'NoneDetected', message: 'No sign of a compromised account' };
  }
  const parts = flags.map((f) => `${f.message} (detected ${f.detectedAt})`);
  if (suspension) {
    if (flags.length === 0) parts.push(suspension.message);
    parts.push(
      `the relays refuse this user until ${suspension.until} (abuse.autoSuspend); DELETE /abuse/${username} on a relay's admin API lifts it`,
    );
  }
  return { ...base, status: 'True', reason: first.reason || 'AbuseSuspected', message: parts.join('; ') };
}

/** The users-file outcome, unless the relays refuse the user after an abuse flag. */
export function withAbuseSuspension(
  outcome: Outcome,
  username: string,
  usage: PolicyUsage | undefined,
): Outcome {
  const suspension = usage && suspensionOf(username, usage);
  if (!outcome.ok || !suspension) return outcome;
  return {
    ok: false,
    reason: 'AbuseSuspended',
    message: `The relays refuse this user until ${suspension.until}: ${suspension.message}`,
  };
}
