// Which rate limits apply to a message, as store rules. Pure: the state store does the
// counting. A user's own limits replace the policy's per-user limits.
import type { RateLimit, RelayConfig, UserRecord } from '../config/schema.ts';
import type { RateRule } from '../state/store.ts';

export type RateScope = 'user' | 'ip';

export interface ScopedRule extends RateRule {
  scope: RateScope;
  limitSpec: RateLimit;
}

function rules(scope: RateScope, id: string, limits: readonly RateLimit[], cost: (l: RateLimit) => number) {
  return limits.map(
    (l): ScopedRule => ({
      key: `rate:${scope}:${id}:${l.what}:${l.windowSeconds}`,
      cost: cost(l),
      limit: l.limit,
      windowMs: l.windowSeconds * 1000,
      scope,
      limitSpec: l,
    }),
  );
}

function applicable(config: RelayConfig, user: UserRecord): Array<[RateScope, readonly RateLimit[]]> {
  const perUser: [RateScope, readonly RateLimit[]] = ['user', user.rateLimits ?? config.rateLimits.perUser];
  // A draining pod handing its queue to this one is no client: its address is a pod's,
  // and a queue larger than a per-IP allowance would otherwise be left on its volume.
  if (user.username === config.drain.handoff?.username) return [perUser];
  return [perUser, ['ip', config.rateLimits.perIp]];
}

/** Every applicable limit of the given kinds, for the user and for the client IP. */
function scopedRules(
  config: RelayConfig,
  user: UserRecord,
  clientIp: string,
  kinds: ReadonlyArray<RateLimit['what']>,
  cost: (l: RateLimit) => number,
): ScopedRule[] {
  return applicable(config, user).flatMap(([scope, limits]) =>
    rules(
      scope,
      scope === 'user' ? user.username : clientIp,
      limits.filter((l) => kinds.includes(l.what)),
      cost,
    ),
  );
}

/**
 * At MAIL FROM: every message and recipient limit is read (cost 0), so the message can be
 * refused when a limit has no room and RCPTs can be checked without another round trip.
 * Nothing is counted before the message is accepted (see messageAndRecipientRules).
 */
export function mailRules(config: RelayConfig, user: UserRecord, clientIp: string): ScopedRule[] {
  return scopedRules(config, user, clientIp, ['messages', 'recipients'], () => 0);
}

/** At end of DATA: the message's recipients are consumed from every recipient limit. */
export function recipientRules(
  config: RelayConfig,
  user: UserRecord,
  clientIp: string,
  recipients: number,
): ScopedRule[] {
  return scopedRules(config, user, clientIp, ['recipients'], () => recipients);
}

/**
 * At end of DATA, once the message is accepted: the message and its recipients, counted
 * in one consume, so a transaction that is reset or refused costs nothing. With 0
 * recipients, what MAIL FROM asks when a limit has no room (to learn which and until when).
 */
export function messageAndRecipientRules(
  config: RelayConfig,
  user: UserRecord,
  clientIp: string,
  recipients: number,
): ScopedRule[] {
  return scopedRules(config, user, clientIp, ['messages', 'recipients'], (l) =>
    l.what === 'messages' ? 1 : recipients,
  );
}

/** How a window reads in a reply: "hour", "day", "15 min". */
export function windowName(seconds: number): string {
  const named: Record<number, string> = { 60: 'minute', 3600: 'hour', 86400: 'day', 604800: 'week' };
  if (named[seconds]) return named[seconds];
  if (seconds % 86400 === 0) return `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** How a wait reads in a reply: "42 s", "5 min", "3 h". */
export function waitText(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.ceil(s / 60)} min`;
  return `${Math.ceil(s / 3600)} h`;
}
