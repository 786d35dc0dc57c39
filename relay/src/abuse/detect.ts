// Signs of a compromised account in its own usage, as pure decisions: a volume far above
// the account's recent baseline, authentication from many client IPs, mail that is mostly
// refused, and mail that bounces as sent to invalid recipients or blocked as spam (the
// reply classes of delivery/reply-class.ts). The evaluator feeds them hourly buckets
// from the state store.
import type { RelayConfig } from '../config/schema.ts';

export type AbuseKind =
  | 'volume_spike'
  | 'many_client_ips'
  | 'mostly_rejected'
  | 'invalid_recipients'
  | 'spam_blocked';

export const ABUSE_KINDS: readonly AbuseKind[] = [
  'volume_spike',
  'many_client_ips',
  'mostly_rejected',
  'invalid_recipients',
  'spam_blocked',
];

/** The CamelCase reason a Kubernetes condition or event carries for each kind. */
export const ABUSE_REASONS: Readonly<Record<AbuseKind, string>> = {
  volume_spike: 'VolumeSpike',
  many_client_ips: 'ManyClientIps',
  mostly_rejected: 'MostlyRejected',
  invalid_recipients: 'InvalidRecipients',
  spam_blocked: 'SpamBlocked',
};

export type AbuseThresholds = Pick<
  RelayConfig['abuse'],
  | 'volumeFactor'
  | 'volumeFloor'
  | 'maxClientIps'
  | 'rejectRatio'
  | 'minAttempts'
  | 'invalidRecipientRatio'
  | 'spamBlockRatio'
  | 'shareJumpFactor'
>;

/** One hourly bucket of one user, as far as detection needs it. */
export interface HourCounts {
  messages: number;
  /** Transactions refused (at MAIL FROM or end of DATA). */
  rejected: number;
  distinctClientIps: number;
  /** Recipients whose delivery ended (delivered or bounced). */
  deliveries?: number;
  /** Of those, bounced as invalid-recipient. */
  invalidRecipients?: number;
  /** Of those, bounced as spam-block (the receiver blocks the sender as a spam source). */
  spamBlocks?: number;
}

export interface UserHours {
  user: string;
  /** The hour now running. */
  current: HourCounts;
  /** The hour before it. */
  previous: HourCounts;
  /** How far into the current hour now is, 0 to 1. */
  elapsed: number;
  /** Messages of each of the (up to 24) hours before the current one; absent hours count 0. */
  history: readonly number[];
  /** Deliveries and bounces by class over the same hours, for the bounce shares' baseline. */
  bounceHistory?: Pick<HourCounts, 'deliveries' | 'invalidRecipients' | 'spamBlocks'>;
}

export interface AbuseFinding {
  user: string;
  kind: AbuseKind;
  reason: string;
  /** The figures behind the finding, for logs, the API and the condition message. */
  numbers: Record<string, number>;
  message: string;
}

/**
 * A count over the last 60 minutes from two fixed hours: the current one plus the share
 * of the previous one that still overlaps (the rate limits' sliding-window estimate).
 */
export function lastHour(current: number, previous: number, elapsed: number): number {
  return Math.round(current + previous * (1 - Math.min(1, Math.max(0, elapsed))));
}

type BounceKey = 'deliveries' | 'invalidRecipients' | 'spamBlocks';

/** A delivery count of the user over the last 60 minutes. */
function lastHourOf(hours: Omit<UserHours, 'history'>, key: BounceKey): number {
  return lastHour(hours.current[key] ?? 0, hours.previous[key] ?? 0, hours.elapsed);
}

/** The median; 0 for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * Whether the rules need the history at all: the volume rule once the floor is reached, the
 * bounce shares once one is over its ratio (most users are neither).
 */
export function needsHistory(hours: Omit<UserHours, 'history'>, t: AbuseThresholds): boolean {
  if (lastHour(hours.current.messages, hours.previous.messages, hours.elapsed) >= t.volumeFloor) return true;
  const sum = (key: BounceKey) => lastHourOf(hours, key);
  const deliveries = sum('deliveries');
  return (
    deliveries >= t.minAttempts &&
    (sum('invalidRecipients') > t.invalidRecipientRatio * deliveries ||
      sum('spamBlocks') > t.spamBlockRatio * deliveries)
  );
}

/** Every rule the user's last hour breaks. */
export function detectAbuse(hours: UserHours, t: AbuseThresholds): AbuseFinding[] {
  const found: AbuseFinding[] = [];
  const add = (kind: AbuseKind, numbers: Record<string, number>, message: string) =>
    found.push({ user: hours.user, kind, reason: ABUSE_REASONS[kind], numbers, message });

  const messages = lastHour(hours.current.messages, hours.previous.messages, hours.elapsed);
  const baseline = median(hours.history);
  if (messages >= t.volumeFloor && messages > t.volumeFactor * baseline) {
    add(
      'volume_spike',
      { messages, baselineMedian: baseline, factor: t.volumeFactor, floor: t.volumeFloor },
      `${messages} messages in the last hour, over ${t.volumeFactor}× the median of the ${hours.history.length} hours before (${baseline})`,
    );
  }

  const ips = hours.current.distinctClientIps;
  if (ips > t.maxClientIps) {
    add(
      'many_client_ips',
      { distinctClientIps: ips, limit: t.maxClientIps },
      `authenticated from ${ips} distinct client IPs this hour (more than ${t.maxClientIps})`,
    );
  }

  const rejected = lastHour(hours.current.rejected, hours.previous.rejected, hours.elapsed);
  const attempts = messages + rejected;
  if (attempts >= t.minAttempts && rejected > t.rejectRatio * attempts) {
    add(
      'mostly_rejected',
      { rejected, attempts, ratio: Math.round((rejected / attempts) * 1000) / 1000, limit: t.rejectRatio },
      `${rejected} of ${attempts} transactions refused in the last hour (more than ${Math.round(t.rejectRatio * 100)} %)`,
    );
  }

  const sum = (key: BounceKey) => lastHourOf(hours, key);
  const deliveries = sum('deliveries');
  const share = (kind: AbuseKind, key: 'invalidRecipients' | 'spamBlocks', limit: number, what: string) => {
    const count = sum(key);
    if (deliveries < t.minAttempts || count <= limit * deliveries) return;
    const ratio = Math.round((count / deliveries) * 1000) / 1000;
    // a jump: over the user's own share of the hours before, not a list that always bounces
    const before = hours.bounceHistory;
    const usual = before?.deliveries ? (before[key] ?? 0) / before.deliveries : 0;
    if (t.shareJumpFactor > 0 && usual > 0 && count <= t.shareJumpFactor * usual * deliveries) return;
    const numbers: Record<string, number> = { [key]: count, deliveries, ratio, limit };
    if (usual > 0) numbers.usualRatio = Math.round(usual * 1000) / 1000;
    add(
      kind,
      numbers,
      `${count} of ${deliveries} recipients in the last hour bounced ${what} (more than ${Math.round(limit * 100)} %${usual > 0 ? `, and over ${t.shareJumpFactor}× the user's ${Math.round(usual * 1000) / 10} % of the hours before` : ''})`,
    );
  };
  share('invalid_recipients', 'invalidRecipients', t.invalidRecipientRatio, 'as invalid recipients');
  share('spam_blocked', 'spamBlocks', t.spamBlockRatio, 'because the receiver blocks the mail as spam');
  return found;
}
