// Recording what a transport answered into a message's envelope. Pure: the delivery
// manager persists what this returns, so a retry knows exactly who is still owed the mail.
import { classifyReply } from '../delivery/reply-class.ts';
import type { RecipientResult } from '../delivery/types.ts';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { expired, type RetryConfig } from './retry-schedule.ts';

export interface AppliedResults {
  envelope: SpooledEnvelope;
  /** Recipients that became bounced by these results (including by expiry), as now recorded. */
  newlyBounced: SpooledRecipient[];
  /** No recipient is pending or deferred any more: the message can leave the queue. */
  done: boolean;
}

/** Still owed a delivery attempt: anything not known to be final (delivered, bounced). */
export function isOpen(recipient: SpooledRecipient): boolean {
  return recipient.state !== 'delivered' && recipient.state !== 'bounced';
}

/**
 * Records each recipient's result: delivered and bounced are final; deferred stays deferred
 * unless the message is older than queueLifetime, then it bounces with 5.4.7. Results for
 * recipients that are already final, or not in the envelope, are ignored. Never mutates.
 */
export function applyResults(
  envelope: SpooledEnvelope,
  results: readonly RecipientResult[],
  now: number,
  retry: RetryConfig,
): AppliedResults {
  const byAddress = new Map(results.map((r) => [r.address, r]));
  const isExpired = expired(new Date(envelope.receivedAt), now, retry);
  const finishedAt = new Date(now).toISOString();
  const newlyBounced: SpooledRecipient[] = [];
  const recipients = envelope.recipients.map((recipient): SpooledRecipient => {
    const result = byAddress.get(recipient.address);
    if (!result || !isOpen(recipient)) return { ...recipient };
    const next: SpooledRecipient = {
      ...recipient,
      attempts: (recipient.attempts ?? 0) + 1,
      response: result.response,
      status: result.status,
      class: result.class ?? classifyReply(result),
    };
    if (result.remoteHost === undefined) delete next.remoteHost;
    else next.remoteHost = result.remoteHost;
    if (result.dsnPassed === true && result.outcome === 'delivered') next.dsnPassed = true;
    if (result.outcome === 'deferred' && isExpired) {
      next.state = 'bounced';
      next.status = '5.4.7';
      next.response = `delivery time expired: ${result.response}`;
    } else {
      next.state = result.outcome;
    }
    if (next.state !== 'deferred') next.finishedAt = finishedAt;
    if (next.state === 'bounced') newlyBounced.push(next);
    return next;
  });
  return {
    envelope: { ...envelope, recipients },
    newlyBounced: newlyBounced.map((r) => ({ ...r })),
    done: !recipients.some(isOpen),
  };
}

const OUTCOMES: ReadonlySet<string> = new Set<RecipientResult['outcome']>([
  'delivered',
  'deferred',
  'bounced',
]);

/**
 * One result per recipient of a job: a transport that breaks its contract (throws, omits
 * a recipient, or gives an outcome that is none of delivered, deferred, bounced) leaves
 * those recipients deferred with 4.0.0, so nothing is lost or bounced because of a local bug.
 */
export function completeResults(
  recipients: readonly string[],
  results: readonly RecipientResult[],
  missing: string,
): RecipientResult[] {
  const byAddress = new Map(results.filter((r) => OUTCOMES.has(r.outcome)).map((r) => [r.address, r]));
  return recipients.map(
    (address) =>
      byAddress.get(address) ?? { address, outcome: 'deferred', response: missing, status: '4.0.0' },
  );
}
