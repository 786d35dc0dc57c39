// The DATA encoding for delivery (RFC 5321 4.5.2): a dot that starts a line is doubled,
// bare CR and bare LF become CRLF (so no receiver can be made to see an early end of
// data, "SMTP smuggling"), and the end is CRLF.CRLF. It does what nodemailer's own
// DataStream does, byte for byte, but finds the few places to change with native
// Buffer.indexOf scans instead of a JavaScript loop over every byte: on 1 MB messages
// that loop was the relay's largest single CPU cost (about 6 ms per message).
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { LineDots } from '../wire/line-dots.ts';
import { recycle } from './recycled-reader.ts';
import type { JobDsn } from './types.ts';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_CR = Buffer.from('\r');
const INSERT_DOT = Buffer.from('.');

/**
 * Dot-stuffs and canonicalises line ends; counts bytes in and out as nodemailer's stream
 * does. Given a socket, it writes there itself instead of pushing its output, takes the
 * next chunk only once the socket has taken the last, and gives each input chunk back to
 * its RecycledFileReader (recycle) when nothing refers to its bytes any more.
 */
export class DotStuffer extends Transform {
  /** The input has CRLF line ends only (a spooled message): only dots need work. */
  readonly #crlfOnly: boolean;
  readonly #socket: Writable | undefined;
  inByteCount = 0;
  outByteCount = 0;
  /** The last byte of the previous chunk; -1 before the first. */
  #last = -1;
  /**
   * The latest encoded chunk, held until the next one comes or the end, so the end of
   * data leaves in the same write as the last of the message (a small message: one write).
   */
  #held: Buffer | null = null;

  constructor(options: { crlfOnly?: boolean; socket?: Writable } = {}) {
    super();
    this.#crlfOnly = options.crlfOnly === true;
    this.#socket = options.socket;
  }

  override _transform(chunk: Buffer | string, _encoding: BufferEncoding, done: TransformCallback): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (buf.length === 0) {
      done();
      return;
    }
    this.inByteCount += buf.length;
    const out = this.#crlfOnly ? stuffCrlf(buf, this.#last) : stuff(buf, this.#last);
    this.#last = buf[buf.length - 1] ?? -1;
    // encoded into a copy: the input's bytes are no longer needed (and may be read over at once)
    if (out !== buf) recycle(buf);
    this.outByteCount += out.length;
    const previous = this.#held;
    this.#held = out;
    if (previous) this.#emit(previous, done);
    else done();
  }

  override _flush(done: TransformCallback): void {
    const end = Buffer.from(this.#last === LF ? '.\r\n' : this.#last === CR ? '\n.\r\n' : '\r\n.\r\n');
    this.outByteCount += end.length;
    const held = this.#held;
    this.#held = null;
    if (held === null) {
      this.#emit(end, done);
      return;
    }
    // the last of the message and the end of data leave in one system call (a writev of
    // both, corked), without a copy that joins them
    const socket = this.#socket;
    socket?.cork();
    this.#emit(held, () => {});
    this.#emit(end, done);
    socket?.uncork();
  }

  /** Sends a chunk on: to the socket, then recycled; or pushed, without a socket. */
  #emit(out: Buffer, done: () => void): void {
    const socket = this.#socket;
    if (!socket) {
      this.push(out);
      done();
      return;
    }
    // A failed write (the connection broke) is not this stream's error: nodemailer hears of
    // it from the socket and fails the transaction; the rest of the data goes nowhere.
    if (!socket.writable) {
      recycle(out);
      done();
      return;
    }
    socket.write(out, () => {
      recycle(out);
      done();
    });
  }
}

/**
 * One chunk, encoded. `last` is the byte before it (-1 at the start of the data). Each
 * position needs at most one insertion: which one depends only on the byte before it
 * (CR: a missing LF; LF: a dot to double; otherwise a missing CR before a LF).
 */
export function stuff(buf: Buffer, last: number): Buffer {
  return hasBareLineEnd(buf, last) ? stuffAny(buf, last) : stuffCrlf(buf, last);
}

/** A bare CR (not one ending the chunk: its LF may start the next) or a bare LF. */
const BARE = /\r(?!\n|$)|(?<!\r)\n/g;

/**
 * Whether the chunk has a CR or LF that is not half of a CRLF pair. The spool holds
 * CRLF-only messages, so nearly never: one regular-expression search over a latin1 view
 * says so in native code, where finding each line end from JavaScript took a call per line.
 */
function hasBareLineEnd(buf: Buffer, last: number): boolean {
  if (last === CR && buf[0] !== LF) return true;
  // an LF that completes the previous chunk's CR is no bare LF
  BARE.lastIndex = last === CR ? 1 : 0;
  return BARE.test(buf.toString('latin1'));
}

/** stuffAny for a chunk with only CRLF line ends: a dot that starts a line is doubled. */
export function stuffCrlf(buf: Buffer, last: number): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  if ((last === -1 || last === LF) && buf[0] === DOT) parts.push(INSERT_DOT);
  const dots = new LineDots(buf);
  for (let i = dots.next(0); i !== -1; i = dots.next(i + 2)) {
    parts.push(buf.subarray(from, i + 1), INSERT_DOT);
    from = i + 1;
  }
  if (parts.length === 0) return buf;
  parts.push(buf.subarray(from));
  return Buffer.concat(parts);
}

/** Any chunk: each position needs at most one insertion (see stuff). */
function stuffAny(buf: Buffer, last: number): Buffer {
  const insertions: Array<[number, Buffer]> = [];
  // after a CR: anything but LF is a bare CR
  if (last === CR && buf[0] !== LF) insertions.push([0, buf[0] === DOT ? INSERT_LF_DOT : INSERT_LF]);
  for (let i = buf.indexOf(CR); i !== -1 && i + 1 < buf.length; i = buf.indexOf(CR, i + 1)) {
    const next = buf[i + 1];
    if (next !== LF) insertions.push([i + 1, next === DOT ? INSERT_LF_DOT : INSERT_LF]);
  }
  // at the start of the data or of a line: a leading dot
  if ((last === -1 || last === LF) && buf[0] === DOT) insertions.push([0, INSERT_DOT]);
  for (let i = buf.indexOf(LF); i !== -1; i = buf.indexOf(LF, i + 1)) {
    const prev = i > 0 ? buf[i - 1] : last;
    if (prev !== CR) insertions.push([i, INSERT_CR]);
    if (buf[i + 1] === DOT) insertions.push([i + 1, INSERT_DOT]);
  }
  if (insertions.length === 0) return buf;
  insertions.sort((a, b) => a[0] - b[0]);
  const parts: Buffer[] = [];
  let from = 0;
  for (const [pos, insert] of insertions) {
    if (pos > from) parts.push(buf.subarray(from, pos));
    parts.push(insert);
    from = pos;
  }
  if (from < buf.length) parts.push(buf.subarray(from));
  return Buffer.concat(parts);
}

/** nodemailer's internals that its DATA stream set-up touches. */
interface SendInternals {
  _envelope: unknown;
  _responseActions: Array<(str: string) => void>;
  _actionSMTPStream(str: string, callback: (err: Error | null, str?: string) => void): void;
  _currentDataStream: Transform | false;
  _socket: Writable;
}

/**
 * nodemailer's SMTP client with the DATA stream above in place of its own. Only the
 * stream set-up is replaced (`_createSendStream`, nodemailer 10, SMTP not LMTP, no debug
 * copy of the data); the DATA command, the reply handling and the result are nodemailer's.
 * It also declares SMTPUTF8 on MAIL FROM when asked to (`_sendCommand`): nodemailer does
 * so only for internationalised addresses, not for UTF-8 in the header (RFC 6532).
 */
export class StuffingSMTPConnection extends SMTPConnection {
  /** The next message sent has CRLF line ends only (see DotStuffer). */
  crlfOnly = false;
  /** The next message's MAIL FROM declares SMTPUTF8 where the server offers it. */
  smtpUtf8 = false;
  /** The next message's DSN request; its RCPTs carry each recipient's NOTIFY and ORCPT. */
  dsn: JobDsn | undefined;

  /**
   * nodemailer puts one NOTIFY and ORCPT on every RCPT of a transaction; each recipient
   * gets its own here, set on the envelope just before its RCPT is written.
   */
  _sendRcpt(recipient: string, callback: unknown): void {
    const self = this as unknown as { _envelope: { dsn?: { notify: string | null; orcpt: string | null } } };
    const dsn = self._envelope.dsn;
    if (dsn) {
      const own = this.dsn?.recipients[recipient];
      dsn.notify = own?.notify?.join(',') ?? null;
      dsn.orcpt = own?.orcpt ?? null;
    }
    (SMTPConnection.prototype as unknown as { _sendRcpt(r: string, c: unknown): void })._sendRcpt.call(
      this,
      recipient,
      callback,
    );
  }

  _sendCommand(command: string, logged?: string): void {
    const send = (SMTPConnection.prototype as unknown as { _sendCommand(c: string, l?: string): void })
      ._sendCommand;
    const declare =
      this.smtpUtf8 &&
      command.startsWith('MAIL FROM:') &&
      !/ SMTPUTF8( |$)/.test(command) &&
      this.offers('SMTPUTF8');
    send.call(this, declare ? `${command} SMTPUTF8` : command, logged);
  }

  /** Whether the server's EHLO reply offered an extension (e.g. SMTPUTF8). */
  offers(extension: string): boolean {
    return (this as unknown as { _supportedExtensions: string[] })._supportedExtensions.includes(extension);
  }

  _createSendStream(callback: (err: Error | null, str?: string) => void): DotStuffer {
    const self = this as unknown as SendInternals;
    const stream = new DotStuffer({ crlfOnly: this.crlfOnly, socket: self._socket });
    self._responseActions.push((str) => self._actionSMTPStream(str, callback));
    self._currentDataStream = stream;
    // it writes to the socket itself; its readable side carries nothing, but must end
    stream.resume();
    stream.once('end', () => {
      if (self._currentDataStream === stream) self._currentDataStream = false;
    });
    return stream;
  }
}

/** What nodemailer's send() takes as the envelope's DSN part: RET and ENVID (MAIL FROM). */
export function envelopeDsn(dsn: JobDsn | undefined): { dsn?: { ret?: string; envid?: string } } {
  if (!dsn) return {};
  return { dsn: { ...(dsn.ret ? { ret: dsn.ret } : {}), ...(dsn.envid ? { envid: dsn.envid } : {}) } };
}
