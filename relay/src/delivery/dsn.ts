// Delivery status notifications (RFC 3464): what a sender gets back when recipients
// failed for good, are still being retried after the delay-warning time, or (NOTIFY=
// SUCCESS, RFC 3461) were relayed to a next hop that takes no DSN requests. A notice
// carries the original headers; a failure notice for a message sent with RET=FULL
// carries the whole message when it is small enough (FULL_RETURN_MAX_BYTES, as Postfix
// limits it with bounce_size_limit). ENVID and ORCPT come back as Original-Envelope-Id
// and Original-Recipient.
import { open } from 'node:fs/promises';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { rfc5322Date } from '../wire/date.ts';

export type DsnAction = 'failed' | 'delayed' | 'relayed';

/** The largest original a failure notice returns whole (RET=FULL); a larger one, its headers. */
export const FULL_RETURN_MAX_BYTES = 256 * 1024;

export interface DsnOptions {
  /** Our hostname: Reporting-MTA and the MAILER-DAEMON address. */
  reportingMta: string;
  /** The original message's envelope. */
  envelope: SpooledEnvelope;
  /** The recipients this notice is about. */
  recipients: readonly SpooledRecipient[];
  action: DsnAction;
  /** The original message's header block; given more, it is cut at the blank line. */
  originalHeaders: Buffer;
  /** The whole original message, returned instead of its headers (RET=FULL, failure notices). */
  originalMessage?: Buffer;
  now: Date;
  /** The notice's Message-ID, e.g. `<${queueId}.dsn@${host}>`. */
  messageId: string;
  /** For a delay notice: when the relay gives up (arrival + queue lifetime). */
  retryUntil?: Date;
}

const CRLF = '\r\n';
// RFC 5322 2.1.1: lines MUST stay within 998 characters and SHOULD within 78.
const MAX_LINE = 998;
const FOLD_AT = 78;
const SMTP_REPLY = /^[2-5]\d\d(?:[ -]|$)/;
const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;
const MAX_BOUNDARY = 70;

export const DEFAULT_HEADER_BLOCK_BYTES = 64 * 1024;
const READ_CHUNK = 8 * 1024;

/** Builds the complete notice (CRLF line endings), ready to be spooled with the null sender. */
export function buildDsn(options: DsnOptions): Buffer {
  const { envelope, recipients, action } = options;
  // A bounce is never bounced (RFC 5321 6.1): the caller must not ask.
  if (envelope.sender === '') throw new TypeError('buildDsn: the message has the null sender');
  if (recipients.length === 0) throw new TypeError('buildDsn: no recipients to report on');

  const host = oneLine(options.reportingMta);
  const text = notificationText(options, host);
  const report = deliveryStatus(options, host);
  const headers = originalHeaderPart(options.originalHeaders);

  const base = `${envelope.queueId}.${Math.floor(options.now.getTime() / 1000)}/`;
  const boundary = chooseBoundary(
    base + host.replace(/[^A-Za-z0-9.-]/g, '').slice(0, Math.max(0, MAX_BOUNDARY - base.length - 4)),
    [text, report, headers.latin1, options.originalMessage?.toString('latin1') ?? ''],
  );

  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${host}>`,
    `To: <${oneLine(envelope.sender)}>`,
    `Subject: ${SUBJECTS[action]}`,
    `Date: ${rfc5322Date(options.now)}`,
    `Message-ID: ${angle(oneLine(options.messageId))}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
  ];
  // Each part ends with an extra CRLF: the one before the next delimiter belongs to it
  // (RFC 2046 5.1.1), and the part's own last line keeps its line ending.
  const delimiter = `--${boundary}`;
  const pieces: Buffer[] = [
    Buffer.from(head.join(CRLF) + CRLF, 'utf8'),
    Buffer.from(
      [
        delimiter,
        'Content-Description: Notification',
        'Content-Type: text/plain; charset=utf-8',
        `Content-Transfer-Encoding: ${/[^\p{ASCII}]/u.test(text) ? '8bit' : '7bit'}`,
        '',
        text,
      ].join(CRLF) + CRLF,
      'utf8',
    ),
    Buffer.from(
      [
        delimiter,
        'Content-Description: Delivery report',
        'Content-Type: message/delivery-status',
        '',
        report,
      ].join(CRLF) + CRLF,
      'ascii',
    ),
  ];
  if (options.originalMessage !== undefined) {
    const eightBit = options.originalMessage.some((byte) => byte > 0x7f);
    pieces.push(
      Buffer.from(
        [
          delimiter,
          'Content-Description: Undelivered Message',
          'Content-Type: message/rfc822',
          `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
          '',
          '',
        ].join(CRLF),
        'ascii',
      ),
      options.originalMessage,
      Buffer.from(
        options.originalMessage.subarray(-2).equals(Buffer.from(CRLF)) ? CRLF : CRLF + CRLF,
        'ascii',
      ),
    );
  } else if (headers.latin1 !== '') {
    const description = HEADER_PART_DESCRIPTIONS[action];
    pieces.push(
      Buffer.from(
        [
          delimiter,
          `Content-Description: ${description}`,
          // UTF-8 in the original header (RFC 6532): RFC 6533's type for it
          `Content-Type: ${headers.eightBit ? 'message/global-headers' : 'text/rfc822-headers'}`,
          `Content-Transfer-Encoding: ${headers.eightBit ? '8bit' : '7bit'}`,
          '',
          headers.latin1,
        ].join(CRLF) + CRLF,
        'latin1',
      ),
    );
  }
  pieces.push(Buffer.from(`${delimiter}--${CRLF}`, 'ascii'));
  return Buffer.concat(pieces);
}

/**
 * Reads a spooled message only up to the end of its header block (the lines before the
 * first empty line, each with its line ending), never more than maxBytes. A header
 * block longer than that is cut at the last complete line.
 */
export async function readHeaderBlock(
  bodyPath: string,
  maxBytes: number = DEFAULT_HEADER_BLOCK_BYTES,
  /** Where the message ends in the file (a spool file holds its envelope after it). */
  bodyBytes: number = Number.POSITIVE_INFINITY,
): Promise<Buffer> {
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`readHeaderBlock: maxBytes must be a positive integer, not ${maxBytes}`);
  }
  const handle = await open(bodyPath, 'r');
  try {
    const buffer = Buffer.alloc(maxBytes);
    let length = 0;
    while (length < maxBytes) {
      const want = Math.min(READ_CHUNK, maxBytes - length, bodyBytes - length);
      const { bytesRead } = want > 0 ? await handle.read(buffer, length, want, length) : { bytesRead: 0 };
      if (bytesRead === 0) return Buffer.from(buffer.subarray(0, length)); // the message is all header
      const searchFrom = Math.max(0, length - 2);
      length += bytesRead;
      const end = headerEnd(buffer.subarray(0, length), searchFrom);
      if (end !== -1) return Buffer.from(buffer.subarray(0, end));
    }
    return Buffer.from(buffer.subarray(0, buffer.lastIndexOf(0x0a) + 1));
  } finally {
    await handle.close();
  }
}

/** Where the header block ends (just after the last header line's LF), or -1 if not yet seen. */
function headerEnd(data: Buffer, searchFrom: number): number {
  if (data[0] === 0x0a || (data[0] === 0x0d && data[1] === 0x0a)) return 0;
  const lf = data.indexOf('\n\n', searchFrom, 'latin1');
  const crlf = data.indexOf('\n\r\n', searchFrom, 'latin1');
  const found = [lf, crlf].filter((i) => i !== -1);
  return found.length === 0 ? -1 : Math.min(...found) + 1;
}

const SUBJECTS: Record<DsnAction, string> = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  relayed: 'Successful Mail Relay Report',
};

const HEADER_PART_DESCRIPTIONS: Record<DsnAction, string> = {
  failed: 'Undelivered Message Headers',
  delayed: 'Delayed Message Headers',
  relayed: 'Relayed Message Headers',
};

function notificationText(options: DsnOptions, host: string): string {
  const { envelope } = options;
  const intro =
    options.action === 'failed'
      ? [
          'Your message could not be delivered to one or more of its recipients.',
          'The errors below are permanent, or the message stayed in the queue too',
          'long: the mail system has given up on these recipients.',
          options.originalMessage === undefined
            ? 'The headers of your message are attached.'
            : 'Your message is attached.',
        ]
      : options.action === 'relayed'
        ? [
            'You asked to be told when your message was delivered. It was passed on',
            'to the recipients below through a mail server that sends no such',
            'notices: this is the last notice about them you will get from this',
            'mail system, but other systems may still report errors.',
          ]
        : [
            'Your message has not yet been delivered to one or more of its recipients.',
            'It is still in the queue and delivery will be retried',
            options.retryUntil !== undefined && isValid(options.retryUntil)
              ? `until ${rfc5322Date(options.retryUntil)}.`
              : 'until it has been in the queue for the maximum queue lifetime.',
            'You will get another notice if it fails for good. You do not need to',
            'send the message again.',
          ];
  const arrival = new Date(envelope.receivedAt);
  const lines = [
    `This is the mail delivery system at ${host}.`,
    '',
    ...intro,
    '',
    `Queue ID: ${envelope.queueId}`,
    ...(isValid(arrival) ? [`Arrival date: ${rfc5322Date(arrival)}`] : []),
    '',
  ];
  for (const recipient of options.recipients) {
    lines.push(...wrap(`<${oneLine(recipient.address)}>: ${explain(recipient)}`, FOLD_AT, '    '));
    if (recipient.class !== undefined) lines.push(`    Reason: ${ascii(recipient.class)}`);
    lines.push('');
  }
  return lines.join(CRLF);
}

function explain(recipient: SpooledRecipient): string {
  const response = recipient.response === undefined ? '' : oneLine(recipient.response);
  if (response === '') return 'no further detail was recorded';
  if (recipient.remoteHost !== undefined && SMTP_REPLY.test(response)) {
    return `host ${oneLine(recipient.remoteHost)} said: ${response}`;
  }
  return response;
}

function deliveryStatus(options: DsnOptions, host: string): string {
  const { envelope, action } = options;
  const arrival = new Date(envelope.receivedAt);
  const lines = [
    ...(envelope.envid !== undefined ? fold('Original-Envelope-Id', ascii(envelope.envid)) : []),
    ...fold('Reporting-MTA', `dns; ${ascii(host)}`),
    `X-Sluice-Queue-ID: ${ascii(envelope.queueId)}`,
    ...(isValid(arrival) ? [`Arrival-Date: ${rfc5322Date(arrival)}`] : []),
    '',
  ];
  for (const recipient of options.recipients) {
    const status =
      recipient.status !== undefined && STATUS.test(recipient.status) ? recipient.status : undefined;
    if (recipient.orcpt !== undefined)
      lines.push(...fold('Original-Recipient', originalRecipient(recipient.orcpt)));
    lines.push(...fold('Final-Recipient', addressField(recipient.address)));
    lines.push(`Action: ${action}`, `Status: ${status ?? DEFAULT_STATUS[action]}`);
    if (recipient.remoteHost !== undefined && recipient.remoteHost !== '') {
      lines.push(...fold('Remote-MTA', `dns; ${ascii(recipient.remoteHost)}`));
    }
    const response = recipient.response === undefined ? '' : ascii(recipient.response);
    if (response !== '') {
      // Local failures (no route, connection refused) are not SMTP answers; Postfix
      // labels its own the same way (X-Postfix).
      lines.push(
        ...fold('Diagnostic-Code', `${SMTP_REPLY.test(response) ? 'smtp' : 'X-Sluice'}; ${response}`),
      );
    }
    // an extension field (RFC 3464 7): the relay's class of the answer, as in its logs and metrics
    if (recipient.class !== undefined) lines.push(`X-Sluice-Class: ${ascii(recipient.class)}`);
    const last = lastAttempt(recipient, options.now);
    if (last !== undefined) lines.push(`Last-Attempt-Date: ${rfc5322Date(last)}`);
    if (action === 'delayed' && options.retryUntil !== undefined && isValid(options.retryUntil)) {
      lines.push(`Will-Retry-Until: ${rfc5322Date(options.retryUntil)}`);
    }
    lines.push('');
  }
  return lines.join(CRLF);
}

const DEFAULT_STATUS: Record<DsnAction, string> = { failed: '5.0.0', delayed: '4.0.0', relayed: '2.0.0' };

/** ORCPT "rfc822;bob@example.net" as a report field: "rfc822; bob@example.net". */
function originalRecipient(orcpt: string): string {
  const semicolon = orcpt.indexOf(';');
  return `${ascii(orcpt.slice(0, semicolon))}; ${ascii(orcpt.slice(semicolon + 1))}`;
}

function lastAttempt(recipient: SpooledRecipient, now: Date): Date | undefined {
  if (recipient.finishedAt !== undefined) {
    const finished = new Date(recipient.finishedAt);
    if (isValid(finished)) return finished;
  }
  return (recipient.attempts ?? 0) > 0 ? now : undefined;
}

/**
 * RFC 3464 address field: `rfc822; addr` for an ASCII address; an internationalised one
 * becomes `utf-8; ` with RFC 6533 utf-8-addr-xtext, which keeps the report US-ASCII.
 */
function addressField(address: string): string {
  const clean = oneLine(address);
  if (/^[\x21-\x7e]+$/.test(clean)) return `rfc822; ${clean}`;
  let xtext = '';
  for (const ch of clean) {
    const code = ch.codePointAt(0) ?? 0;
    const plain = code >= 0x21 && code <= 0x7e && ch !== '+' && ch !== '=' && ch !== '\\';
    xtext += plain ? ch : `\\x{${code.toString(16).toUpperCase().padStart(2, '0')}}`;
  }
  return `utf-8; ${xtext}`;
}

/** The original headers as latin1 (byte for byte), with CRLF endings and no line over 998. */
function originalHeaderPart(raw: Buffer): { latin1: string; eightBit: boolean } {
  let text = raw
    .toString('latin1')
    .replace(/\r\n|\r|\n/g, CRLF)
    .replaceAll('\0', '');
  const blank = text.startsWith(CRLF) ? 0 : text.indexOf(CRLF + CRLF);
  if (blank !== -1) text = text.slice(0, blank === 0 ? 0 : blank + 2);
  const lines = text.split(CRLF);
  if (lines.at(-1) === '') lines.pop();
  const out: string[] = [];
  for (const line of lines) out.push(...splitLong(line));
  return {
    latin1: out.length === 0 ? '' : out.join(CRLF) + CRLF,
    eightBit: /[\x80-\xff]/.test(text),
  };
}

/** Breaks an over-long header line into continuation lines, never inside a UTF-8 sequence. */
function splitLong(line: string): string[] {
  const out: string[] = [];
  let rest = line;
  while (rest.length > MAX_LINE) {
    let cut = MAX_LINE;
    while (cut > 1 && isUtf8Continuation(rest.charCodeAt(cut))) cut--;
    out.push(rest.slice(0, cut));
    rest = ` ${rest.slice(cut)}`;
  }
  out.push(rest);
  return out;
}

function isUtf8Continuation(byte: number): boolean {
  return byte >= 0x80 && byte <= 0xbf;
}

/** Folds `Name: value` at spaces (RFC 5322 2.2.3); a word too long for one line is split. */
function fold(name: string, value: string): string[] {
  return wrap(`${name}: ${value}`, FOLD_AT, ' ');
}

/** Word-wraps one line at width; continuation lines start with indent. */
function wrap(line: string, width: number, indent: string): string[] {
  const words = line
    .split(' ')
    .filter((w) => w !== '')
    .flatMap((w) => chunks(w, MAX_LINE - indent.length - 1));
  const out: string[] = [];
  let current = '';
  for (const word of words) {
    if (current === '') current = out.length === 0 ? word : indent + word;
    else if (current.length + 1 + word.length > width) {
      out.push(current);
      current = indent + word;
    } else current += ` ${word}`;
  }
  if (current !== '') out.push(current);
  return out;
}

function chunks(word: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < word.length; i += size) out.push(word.slice(i, i + size));
  return out;
}

/** A boundary that occurs in none of the parts (RFC 2046 5.1.1). */
function chooseBoundary(base: string, parts: readonly string[]): string {
  for (let n = 0; ; n++) {
    const candidate = n === 0 ? base : `${base}.${n}`;
    if (!parts.some((p) => p.includes(candidate))) return candidate;
  }
}

/** One line: CR, LF and other control characters become spaces. */
function oneLine(value: string): string {
  return value
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
}

/** One line of US-ASCII (RFC 3464 fields): anything else becomes '?'. */
function ascii(value: string): string {
  return oneLine(value).replace(/[^\x20-\x7e]/g, '?');
}

function angle(id: string): string {
  return id.startsWith('<') ? id : `<${id}>`;
}

function isValid(date: Date): boolean {
  return !Number.isNaN(date.getTime());
}
