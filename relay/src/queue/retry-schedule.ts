// When to try a deferred message again, when to give up, and when to tell the sender it is
// late. Pure, so the schedule is tested without a queue or a clock.
import type { RelayConfig } from '../config/schema.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';

export type RetryConfig = RelayConfig['delivery']['retry'];

/**
 * The wait after `attempts` failed attempts (Postfix-like): minBackoff after the first,
 * doubling after each further one, never more than maxBackoff (300 s, 600, 1200, 2400, 3600, 3600 …).
 */
export function retryDelayMs(attempts: number, retry: RetryConfig): number {
  // past 2^20 the product exceeds any sane maxBackoff; clamping keeps it finite
  const doublings = Math.min(Math.max(Math.floor(attempts) - 1, 0), 20);
  const seconds = Math.min(retry.minBackoffSeconds * 2 ** doublings, retry.maxBackoffSeconds);
  return seconds * 1000;
}

/** When a message received at receivedAt stops being retried (ms since the epoch). */
export function expiresAt(receivedAt: Date, retry: RetryConfig): number {
  return receivedAt.getTime() + retry.queueLifetimeSeconds * 1000;
}

/** The message has been queued for queueLifetime or longer; its deferred recipients bounce. */
export function expired(receivedAt: Date, now: number, retry: RetryConfig): boolean {
  return now >= expiresAt(receivedAt, retry);
}

/**
 * The sender should get its one delay notice now: delayWarningSeconds (0 = never) have
 * passed, a recipient is still deferred, and the message is neither a bounce nor a DSN.
 */
export function delayWarningDue(envelope: SpooledEnvelope, now: number, retry: RetryConfig): boolean {
  if (retry.delayWarningSeconds <= 0) return false;
  if (envelope.delayWarned || envelope.dsn || envelope.sender === '') return false;
  if (!envelope.recipients.some((r) => r.state === 'deferred')) return false;
  return now - Date.parse(envelope.receivedAt) >= retry.delayWarningSeconds * 1000;
}
