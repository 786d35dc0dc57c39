import type { LimitsConfig } from '../config/schema.ts';

export type RecipientDecision = 'accept' | 'reject' | 'drop';

/**
 * What to do with the next RCPT of a transaction that already holds `accepted`
 * recipients: accept up to the limit; past it, reject (452 4.5.3, RFC 5321 4.5.3.1.10)
 * or, in the legacy truncate mode, accept with 250 and silently drop.
 */
export function decideRecipient(
  accepted: number,
  limits: Pick<LimitsConfig, 'maxRecipients' | 'recipientOverflow'>,
): RecipientDecision {
  if (accepted < limits.maxRecipients) return 'accept';
  return limits.recipientOverflow === 'truncate' ? 'drop' : 'reject';
}
