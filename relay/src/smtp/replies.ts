// Every SMTP reply Sluice itself sends, in one table: code, RFC 3463 enhanced code,
// text, and the reason label that metrics and logs carry. Protocol replies that
// smtp-server makes on its own (syntax errors, bad sequence, unknown commands) keep
// its wording but carry enhanced codes too; they are listed in LIBRARY_REPLIES so the
// README table is the whole catalogue.

import type { Reason } from '../observability/reasons.ts';

export interface ReplySpec {
  readonly code: number;
  readonly enhanced: string;
  readonly text: string;
  readonly reason: Reason;
}

export const REPLIES = {
  MESSAGE_QUEUED: { code: 250, enhanced: '2.0.0', text: 'Ok: queued as {queueId}', reason: 'accepted' },
  AUTH_REQUIRED: { code: 530, enhanced: '5.7.0', text: 'Authentication required', reason: 'auth_required' },
  AUTH_FAILED: {
    code: 535,
    enhanced: '5.7.8',
    text: 'Authentication credentials invalid',
    reason: 'auth_failed',
  },
  AUTH_SUSPENDED: {
    code: 535,
    enhanced: '5.7.8',
    text: 'Authentication credentials invalid: account suspended',
    reason: 'auth_suspended',
  },
  ACCOUNT_DISABLED: {
    code: 550,
    enhanced: '5.7.13',
    text: 'Account {user} is disabled',
    reason: 'auth_suspended',
  },
  ENCRYPTION_REQUIRED: {
    code: 538,
    enhanced: '5.7.11',
    text: 'Encryption required for requested authentication mechanism',
    reason: 'auth_required',
  },
  AUTH_TEMPFAIL: {
    code: 454,
    enhanced: '4.7.0',
    text: 'Temporary authentication failure, try again later',
    reason: 'auth_tempfail',
  },
  SENDER_NOT_ALLOWED: {
    code: 553,
    enhanced: '5.7.1',
    text: 'Sender address <{sender}> is not allowed for user {user}',
    reason: 'sender_not_allowed',
  },
  HEADER_FROM_MISSING: {
    code: 550,
    enhanced: '5.6.0',
    text: 'Message has no From address: RFC 5322 requires a From header field; add one with the address you send as',
    reason: 'header_from_missing',
  },
  HEADER_SENDER_NOT_ALLOWED: {
    code: 550,
    enhanced: '5.7.1',
    text: 'Header {field} address <{address}> is not allowed for user {user}: send as an address you may use, or have it added to your allowed senders or sending domains',
    reason: 'header_sender_not_allowed',
  },
  DMARC_WOULD_FAIL: {
    code: 550,
    enhanced: '5.7.1',
    text: 'The DMARC policy of {domain} is {policy}, and this message would fail it ({why}): {fix}',
    reason: 'dmarc_would_fail',
  },
  RECIPIENT_SUPPRESSED: {
    code: 550,
    enhanced: '5.1.1',
    text: 'Recipient <{recipient}> is suppressed: mail to it bounced ({class}: {reply}) on {since}; refused until {until}',
    reason: 'recipient_suppressed',
  },
  MESSAGE_TOO_BIG: {
    code: 552,
    enhanced: '5.3.4',
    text: 'Message size exceeds fixed limit of {limit} bytes',
    reason: 'message_too_big',
  },
  TOO_MANY_RECIPIENTS: {
    code: 452,
    enhanced: '4.5.3',
    text: 'Too many recipients, at most {limit} per message; send the rest in a new transaction',
    reason: 'too_many_recipients',
  },
  BLOCKED_ATTACHMENT: {
    code: 550,
    enhanced: '5.7.1',
    text: 'Attachment "{filename}" refused: .{extension} files are not allowed',
    reason: 'blocked_attachment',
  },
  MALFORMED_MESSAGE: {
    code: 550,
    enhanced: '5.6.0',
    text: 'Message could not be parsed: {detail}',
    reason: 'malformed_message',
  },
  HEADER_TOO_BIG: {
    code: 552,
    enhanced: '5.3.4',
    text: 'Message header too big: more than {limit} {what} in the header of the message or of a part',
    reason: 'header_too_big',
  },
  MIME_TOO_COMPLEX: {
    code: 554,
    enhanced: '5.6.0',
    text: 'Message structure too complex: more than {limit} {what}',
    reason: 'mime_too_complex',
  },
  TOO_MANY_CONNECTIONS: {
    code: 421,
    enhanced: '4.7.0',
    text: '{hostname} Too many connections, try again later',
    reason: 'too_many_connections',
  },
  TOO_MANY_CONNECTIONS_IP: {
    code: 421,
    enhanced: '4.7.0',
    text: '{hostname} Too many connections from your address, try again later',
    reason: 'too_many_connections_ip',
  },
  SPOOL_FAILED: {
    code: 451,
    enhanced: '4.3.0',
    text: 'Local error in processing, try again later',
    reason: 'spool_error',
  },
  INSUFFICIENT_STORAGE: {
    code: 452,
    enhanced: '4.3.1',
    text: 'Insufficient system storage, try again later',
    reason: 'insufficient_storage',
  },
  SHUTTING_DOWN: {
    code: 421,
    enhanced: '4.3.2',
    text: '{hostname} Service shutting down, try again later',
    reason: 'shutting_down',
  },
  DNSBL_LISTED_CONNECT: {
    code: 554,
    enhanced: '5.7.1',
    text: '{message}',
    reason: 'dnsbl_listed',
  },
  DNSBL_LISTED: {
    code: 550,
    enhanced: '5.7.1',
    text: '{message}',
    reason: 'dnsbl_listed',
  },
  DNSBL_TEMPFAIL_CONNECT: {
    code: 421,
    enhanced: '4.7.1',
    text: '{hostname} Cannot check your address against {zone} now, try again later',
    reason: 'dnsbl_tempfail',
  },
  DNSBL_TEMPFAIL: {
    code: 451,
    enhanced: '4.7.1',
    text: 'Cannot check your address against {zone} now, try again later',
    reason: 'dnsbl_tempfail',
  },
  RATE_LIMITED: {
    code: 451,
    enhanced: '4.7.1',
    text: 'Rate limit reached: {limit} {what} per {window} for this {scope}; try again in {retry}',
    reason: 'rate_limited',
  },
  AUTH_LOCKED_OUT: {
    code: 454,
    enhanced: '4.7.0',
    text: 'Too many failed authentications; try again in {retry}',
    reason: 'auth_locked_out',
  },
  STATE_TEMPFAIL: {
    code: 451,
    enhanced: '4.3.0',
    text: 'Temporary local problem, try again later',
    reason: 'state_unavailable',
  },
  STATE_TEMPFAIL_CONNECT: {
    code: 421,
    enhanced: '4.3.0',
    text: '{hostname} Temporary local problem, try again later',
    reason: 'state_unavailable',
  },
  UNSUPPORTED_PARAMETER: {
    code: 555,
    enhanced: '5.5.4',
    text: 'Unsupported parameter {parameter}',
    reason: 'protocol_error',
  },
  INVALID_PARAMETER: {
    code: 501,
    enhanced: '5.5.4',
    text: 'Invalid {parameter} parameter: {detail}',
    reason: 'protocol_error',
  },
  SMTPUTF8_REQUIRED: {
    code: 553,
    enhanced: '5.6.7',
    text: 'Address <{address}> is not ASCII: declare SMTPUTF8 on MAIL FROM to use it',
    reason: 'protocol_error',
  },
  LINE_TOO_LONG: {
    code: 500,
    enhanced: '5.5.2',
    text: 'Line too long',
    reason: 'protocol_error',
  },
  TOO_MANY_ERRORS: {
    code: 421,
    enhanced: '4.7.0',
    text: '{hostname} Too many errors, closing connection',
    reason: 'protocol_error',
  },
  TOO_MANY_UNAUTHENTICATED: {
    code: 421,
    enhanced: '4.7.0',
    text: '{hostname} Too many commands without authentication, closing connection',
    reason: 'protocol_error',
  },
  SESSION_TIMEOUT: {
    code: 421,
    enhanced: '4.4.2',
    text: '{hostname} Session time limit exceeded, closing connection',
    reason: 'timeout',
  },
} as const satisfies Record<string, ReplySpec>;
export type ReplyKey = keyof typeof REPLIES;

/** Replies smtp-server makes itself; listed so the catalogue is complete. */
export const LIBRARY_REPLIES: readonly ReplySpec[] = [
  { code: 500, enhanced: '5.5.2', text: 'Error: command not recognized', reason: 'protocol_error' },
  {
    code: 501,
    enhanced: '5.5.4',
    text: 'Error: bad syntax (address or parameter)',
    reason: 'protocol_error',
  },
  { code: 503, enhanced: '5.5.1', text: 'Error: bad sequence of commands', reason: 'protocol_error' },
  {
    code: 552,
    enhanced: '5.3.4',
    text: 'Error: message exceeds fixed maximum message size N (declared SIZE= or streamed)',
    reason: 'message_too_big',
  },
  { code: 421, enhanced: '4.4.2', text: 'Timeout - closing connection', reason: 'timeout' },
];

/** A rejection that smtp-server turns into a reply: err.responseCode and err.message. */
export class SmtpReplyError extends Error {
  readonly responseCode: number;
  readonly reason: Reason;
  readonly replyKey: ReplyKey;
  constructor(key: ReplyKey, text: string) {
    const spec: ReplySpec = REPLIES[key];
    super(`${spec.enhanced} ${text}`);
    this.name = 'SmtpReplyError';
    this.responseCode = spec.code;
    this.reason = spec.reason;
    this.replyKey = key;
  }
}

// A value filled into a reply often comes from the client (a file name, an address): it is
// kept to one line of plain text. Control characters, format characters (bidirectional
// overrides such as U+202E, zero-width characters) and line separators are written as
// \uXXXX, so a name cannot split the reply or read differently from what it is.
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;
const MAX_VALUE = 256;

/** A reply placeholder's value, escaped and bounded. */
export function replyValue(value: string | number): string {
  const text = String(value).replace(
    UNSAFE,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`,
  );
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}...` : text;
}

/** Renders a table entry's text with its {placeholders} filled in (escaped, see replyValue). */
export function replyText(key: ReplyKey, vars: Record<string, string | number> = {}): string {
  const spec: ReplySpec = REPLIES[key];
  return spec.text.replace(/\{(\w+)\}/g, (_m, name: string) => {
    const value = vars[name];
    return value === undefined ? `{${name}}` : replyValue(value);
  });
}

/** The error to hand to an smtp-server callback for this reply. */
export function reject(key: ReplyKey, vars: Record<string, string | number> = {}): SmtpReplyError {
  return new SmtpReplyError(key, replyText(key, vars));
}

/** The full reply line (without CRLF), e.g. "250 2.0.0 Ok: queued as X". */
export function replyLine(key: ReplyKey, vars: Record<string, string | number> = {}): string {
  const spec: ReplySpec = REPLIES[key];
  return `${spec.code} ${spec.enhanced} ${replyText(key, vars)}`;
}

export const ENHANCED_CODE_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
