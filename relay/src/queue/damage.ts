// What the queue does with what it finds damaged on disk. Nothing is dropped without a
// trace: a message that can still be delivered is (at least once beats lost), and what
// cannot be read is moved to <spoolDir>/corrupt/, logged and counted, as Postfix moves a
// damaged queue file to its `corrupt` queue. Both counts feed an alert (charts/sluice/rules).
import type { RecipientState, SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';

/** Why an entry of the queue directory was moved to corrupt/ (sluice_queue_quarantined_total). */
export const QUARANTINE_REASONS = [
  /** A message file without a readable envelope footer (cut short, overwritten). */
  'corrupt_message',
  /** An envelope (in the file or, older layout, beside it) without the shape to deliver from. */
  'corrupt_envelope',
  /** The entry cannot be read at all: a directory, a symlink loop, no permission, I/O error. */
  'unreadable',
  /** A name the queue never writes. */
  'unknown_entry',
] as const;
export type QuarantineReason = (typeof QUARANTINE_REASONS)[number];

/** Why a message was delivered from less than its full state (sluice_queue_recovered_total). */
export const RECOVERY_REASONS = [
  /** The envelope beside the message was damaged: the one inside the message file is used. */
  'damaged_state_file',
  /** A recipient in no known state is tried again rather than taken for done. */
  'unknown_recipient_state',
] as const;
export type RecoveryReason = (typeof RECOVERY_REASONS)[number];

export interface QueueDamageObserver {
  quarantined(reason: QuarantineReason): void;
  recovered(reason: RecoveryReason): void;
}

const STATES: ReadonlySet<string> = new Set<RecipientState>(['pending', 'delivered', 'deferred', 'bounced']);

/**
 * The envelope to deliver from, or undefined when the value lacks the shape for it. A
 * recipient in no known state (a newer version's, or a damaged one) is pending again:
 * only delivered and bounced are final, and nothing else may be taken for them.
 */
export function readableEnvelope(
  value: unknown,
  queueId: string,
): { envelope: SpooledEnvelope; reopened: string[] } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const e = value as Partial<SpooledEnvelope>;
  const shaped =
    e.version === 1 &&
    e.queueId === queueId &&
    typeof e.sender === 'string' &&
    typeof e.receivedAt === 'string' &&
    !Number.isNaN(Date.parse(e.receivedAt)) &&
    Array.isArray(e.recipients) &&
    e.recipients.every((r) => typeof r === 'object' && r !== null && typeof r.address === 'string');
  if (!shaped) return undefined;
  const reopened: string[] = [];
  const recipients = (e.recipients as SpooledRecipient[]).map((r): SpooledRecipient => {
    if (typeof r.state === 'string' && STATES.has(r.state)) return r;
    reopened.push(r.address);
    const { finishedAt: _finished, notified: _notified, ...rest } = r;
    return { ...rest, state: 'pending' };
  });
  return { envelope: { ...(e as SpooledEnvelope), recipients }, reopened };
}
