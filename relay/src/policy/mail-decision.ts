// What MAIL FROM decides, in the order a client sees the refusals: parameters first (RFC
// 1869, RFC 3461's ENVID, RFC 6531's SMTPUTF8), then the account as the users file has it
// now (removed or suspended since AUTH), the user's allowed senders, and room in the spool
// for the declared SIZE (RFC 1870: refused before any data is sent). Pure: the stage reads
// the facts and does the rate limits and the DNSBL after an accept.
import type { UserRecord } from '../config/schema.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { isSenderAllowed } from './sender.ts';

/** The reply names this decision uses; the SMTP front's reply table has each of them. */
export type MailRefusal =
  | 'UNSUPPORTED_PARAMETER'
  | 'INVALID_PARAMETER'
  | 'SMTPUTF8_REQUIRED'
  | 'AUTH_REQUIRED'
  | 'ACCOUNT_DISABLED'
  | 'SENDER_NOT_ALLOWED'
  | 'INSUFFICIENT_STORAGE';

export interface MailFromFacts {
  sender: string;
  /** A MAIL parameter the relay does not take, if one was given. */
  unsupportedParameter: string | undefined;
  /** What is wrong with the ENVID parameter, if it was given malformed. */
  badEnvid: string | undefined;
  /** MAIL FROM declared SMTPUTF8. */
  smtpUtf8: boolean;
  /** The username the session authenticated as; undefined before AUTH. */
  authenticated: string | undefined;
  /** That user's record as the users file has it now; undefined once removed. */
  current: UserRecord | undefined;
  /** Abuse detection suspended the current user. */
  abuseSuspended: boolean;
  /** The spool has room for the declared SIZE and its reserve. */
  spoolRoom: boolean;
}

export type MailFromDecision =
  | { kind: 'accept'; user: UserRecord }
  | {
      kind: 'refuse';
      refusal: MailRefusal;
      vars: Record<string, string | number>;
      /** Log fields of the refusal. */
      fields: Record<string, unknown>;
      /** The user's current record, once the account check passed: the session keeps it. */
      user?: UserRecord;
    };

const refuse = (
  refusal: MailRefusal,
  vars: Record<string, string | number> = {},
  fields: Record<string, unknown> = {},
  user?: UserRecord,
): MailFromDecision => ({ kind: 'refuse', refusal, vars, fields, ...(user ? { user } : {}) });

export function decideMailFrom(facts: MailFromFacts): MailFromDecision {
  const { sender } = facts;
  if (facts.unsupportedParameter !== undefined)
    return refuse('UNSUPPORTED_PARAMETER', { parameter: facts.unsupportedParameter });
  if (facts.badEnvid !== undefined)
    return refuse('INVALID_PARAMETER', { parameter: 'ENVID', detail: facts.badEnvid });
  if (!facts.smtpUtf8 && isInternationalised(sender))
    return refuse('SMTPUTF8_REQUIRED', { address: sender }, { sender });
  if (facts.authenticated === undefined) return refuse('AUTH_REQUIRED');
  const user = facts.current;
  if (!user || user.suspended || facts.abuseSuspended)
    return refuse('ACCOUNT_DISABLED', { user: facts.authenticated });
  if (!isSenderAllowed(sender, user.allowedSenders))
    return refuse('SENDER_NOT_ALLOWED', { sender, user: user.username }, { sender }, user);
  if (!facts.spoolRoom) return refuse('INSUFFICIENT_STORAGE', {}, { sender }, user);
  return { kind: 'accept', user };
}
