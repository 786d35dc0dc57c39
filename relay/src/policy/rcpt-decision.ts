// What RCPT TO decides for one recipient: parameters first (RFC 1869, RFC 6531's SMTPUTF8,
// RFC 3461's ORCPT), a repeated recipient is taken once, then the recipient limit
// (recipients.ts) and what the rate limits still allow for this message. Pure: the stage
// checks the suppression list after an accept.
import type { LimitsConfig } from '../config/schema.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { decideRecipient } from './recipients.ts';

/** The reply names this decision uses; the SMTP front's reply table has each of them. */
export type RcptRefusal =
  | 'UNSUPPORTED_PARAMETER'
  | 'SMTPUTF8_REQUIRED'
  | 'INVALID_PARAMETER'
  | 'TOO_MANY_RECIPIENTS';

export interface RcptFacts {
  /** The recipient as it will be kept (RCPT TO:<postmaster> already mapped). */
  recipient: string;
  /** An RCPT parameter the relay does not take, if one was given. */
  unsupportedParameter: string | undefined;
  /** What is wrong with the ORCPT parameter, if it was given malformed. */
  badOrcpt: string | undefined;
  /** MAIL FROM declared SMTPUTF8. */
  smtpUtf8: boolean;
  /** Recipients the transaction holds already. */
  accepted: readonly string[];
  limits: Pick<LimitsConfig, 'maxRecipients' | 'recipientOverflow'>;
  /** Recipients the rate limits allow for this message (read at MAIL FROM). */
  allowance: number;
}

export type RcptDecision =
  | {
      kind: 'refuse';
      refusal: RcptRefusal;
      vars: Record<string, string | number>;
      /** Counted as a rejected recipient (the limit), not only as a refused command. */
      countsRecipient: boolean;
    }
  /** Already in the envelope: taken once (smtp-server replaces it). */
  | { kind: 'repeat' }
  /** Past maxRecipients in truncate mode: 250, and not delivered. */
  | { kind: 'drop' }
  /** Past what the rate limits allow for this message. */
  | { kind: 'rate_limited' }
  | { kind: 'accept' };

export function decideRcpt(facts: RcptFacts): RcptDecision {
  const { recipient } = facts;
  if (facts.unsupportedParameter !== undefined) {
    return refuse('UNSUPPORTED_PARAMETER', { parameter: facts.unsupportedParameter });
  }
  if (!facts.smtpUtf8 && isInternationalised(recipient)) {
    return refuse('SMTPUTF8_REQUIRED', { address: recipient });
  }
  if (facts.badOrcpt !== undefined) {
    return refuse('INVALID_PARAMETER', { parameter: 'ORCPT', detail: facts.badOrcpt });
  }
  const lower = recipient.toLowerCase();
  if (facts.accepted.some((r) => r.toLowerCase() === lower)) return { kind: 'repeat' };
  switch (decideRecipient(facts.accepted.length, facts.limits)) {
    case 'accept':
      return facts.accepted.length >= facts.allowance ? { kind: 'rate_limited' } : { kind: 'accept' };
    case 'drop':
      return { kind: 'drop' };
    case 'reject':
      return {
        kind: 'refuse',
        refusal: 'TOO_MANY_RECIPIENTS',
        vars: { limit: facts.limits.maxRecipients },
        countsRecipient: true,
      };
  }
}

function refuse(refusal: RcptRefusal, vars: Record<string, string | number>): RcptDecision {
  return { kind: 'refuse', refusal, vars, countsRecipient: false };
}
