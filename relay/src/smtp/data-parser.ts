// smtp-server's input parser with a faster DATA phase. In data mode smtp-server looks for
// the end of data (CRLF.CRLF) and for escape dots by testing every byte in a JavaScript
// loop; on 1 MB messages that loop was 15 % of the relay's main thread. This does the same
// with native searches (LineDots), which jump straight to the next line-leading dot.
// smtp-server also holds back the last four bytes of every chunk (an end of data may
// straddle two) and copies them in front of the next chunk: a copy of the whole message.
// Here only a tail that holds a dot is held back; otherwise everything is passed on and
// the last two bytes are kept as the context the next chunk's first lines are checked in.
// What the application receives, the byte count, the commands after the data and the
// start-of-data rules that stop smuggling by segmentation are smtp-server's; a test
// compares both parsers on random input split at random points.
// Two hooks for the connection: `onrecipients` names the recipients of a chunk that holds
// several RCPT commands (a pipelined batch, RFC 2920) before any of them is handled, and
// `onidle` says that a chunk has been handled and the parser waits for input, which is when
// replies held for the batch must leave (connection.ts).
// In command mode, a line longer than MAX_COMMAND_LINE is not kept whole: its first
// octets go to the connection (which refuses it, line-limits.ts) and the rest is skipped
// up to its line end, so the session goes on; smtp-server would fail the stream instead.
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { LineDots } from '../wire/line-dots.ts';
import { MAX_COMMAND_LINE } from './line-limits.ts';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const DOT_CRLF = Buffer.from('.\r\n');
const END_SEQUENCE = Buffer.from('\r\n.\r\n');
const EMPTY = Buffer.alloc(0);
/** How many bytes smtp-server holds back at the end of a chunk. */
const HOLD = 4;

type Callback = (err?: Error | null) => void;

/** Octets of a line kept before it counts as overlong (a CR before the LF may be among them). */
const KEPT = MAX_COMMAND_LINE + 2;

const RCPT_PATH = /^RCPT TO:[ \t]*<([^<>\r\n]+)>/i;
/** The most recipients named ahead from one chunk. */
const MAX_NAMED = 100;

/** The addresses of the RCPT command lines in a chunk, up to a DATA line (its body may follow). */
export function recipientsIn(chunk: Buffer): string[] {
  const out: string[] = [];
  for (let start = 0; start < chunk.length && out.length < MAX_NAMED; ) {
    const lf = chunk.indexOf(LF, start);
    if (lf === -1) break;
    const first = (chunk[start] ?? 0) | 0x20;
    if (first === 0x64 || first === 0x62) break; // DATA, BDAT
    if (first === 0x72) {
      const match = RCPT_PATH.exec(chunk.toString('utf8', start, lf));
      if (match?.[1]) out.push(match[1]);
    }
    start = lf + 1;
  }
  return out;
}

export class SluiceParser extends SMTPStream {
  /** The kept start of an overlong command line while the rest of it is skipped. */
  #overlong: Buffer | undefined;

  constructor(options: { maxCommandLength?: number } = {}) {
    // smtp-server's own limit is never reached: lines are cut at KEPT before it sees them
    super({ ...options, maxCommandLength: KEPT + 16 });
  }

  /** The recipients of a chunk with two or more RCPT commands, before they are handled. */
  onrecipients: ((addresses: string[]) => void) | undefined;
  /** A chunk has been handled: the parser waits for more input. */
  onidle: (() => void) | undefined;
  /** Whether a chunk of input is being handled (its commands may still be answered). */
  #handling = false;

  get handlingInput(): boolean {
    return this.#handling;
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, next: Callback): void {
    // smtp-server's own _write calls this again for the rest of a chunk after DATA
    if (this.#handling) {
      this.#writeChunk(chunk, encoding, next);
      return;
    }
    this.#handling = true;
    if (this.onrecipients && !this._dataMode && !this.isClosed && chunk && chunk.length > 0) {
      const addresses = recipientsIn(chunk);
      if (addresses.length >= 2) this.onrecipients(addresses);
    }
    this.#writeChunk(chunk, encoding, (err) => {
      this.#handling = false;
      this.onidle?.();
      next(err);
    });
  }

  #writeChunk(chunk: Buffer, encoding: BufferEncoding, next: Callback): void {
    if (this._dataMode || this.isClosed || !chunk || chunk.length === 0) {
      super._write(chunk, encoding, next);
      return;
    }
    if (this.#overlong) {
      this.#skip(chunk, encoding, next);
      return;
    }
    const cut = this.#overlongAt(chunk);
    if (cut === -1) {
      super._write(chunk, encoding, next);
      return;
    }
    // the commands before the overlong line run first; they may have started DATA
    const rest = chunk.subarray(cut);
    const onward = (err?: Error | null): void => {
      if (err) return next(err);
      if (this._dataMode || this.isClosed) return this._write(rest, encoding, next);
      this.#overlong = Buffer.from(this._remainder, 'binary');
      this._remainder = '';
      this.#skip(rest, encoding, next);
    };
    if (cut === 0) onward();
    else super._write(chunk.subarray(0, cut), encoding, onward);
  }

  /** Where the first line longer than KEPT starts in the chunk (0: the held one), or -1. */
  #overlongAt(chunk: Buffer): number {
    let held = this._remainder.length;
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      const end = lf === -1 ? chunk.length : lf;
      if (held + end - start > KEPT) return start;
      if (lf === -1) return -1;
      held = 0;
      start = lf + 1;
    }
  }

  /** Skips the rest of an overlong line; at its end, hands its kept start on as the command. */
  #skip(chunk: Buffer, encoding: BufferEncoding, next: Callback): void {
    const kept = this.#overlong ?? Buffer.alloc(0);
    const lf = chunk.indexOf(LF);
    if (kept.length <= KEPT) {
      const take = Math.min(lf === -1 ? chunk.length : lf, KEPT + 1 - kept.length);
      this.#overlong = Buffer.concat([kept, chunk.subarray(0, take)]);
    }
    if (lf === -1) {
      next();
      return;
    }
    const line = this.#overlong ?? kept;
    this.#overlong = undefined;
    const rest = chunk.subarray(lf + 1);
    this.oncommand(line, () => (rest.length > 0 ? this._write(rest, encoding, next) : next()));
  }

  /**
   * Up to two bytes, already passed on, that come right before the next input (never a
   * dot). Empty at the start of the data, after an escape dot and after a held tail:
   * there smtp-server starts looking at the third byte.
   */
  #context: Buffer = EMPTY;

  /** smtp-server 3's `_feedDataStream`, with the per-byte seek replaced by native searches. */
  override _feedDataStream(input: Buffer, done: Callback): void {
    const dataStream = this._dataStream;
    let chunk = input;
    if (this._lastBytes && this._lastBytes.length > 0) {
      chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
      this._lastBytes = false;
    }
    const context = this.#context;
    this.#context = EMPTY;
    let len = chunk.length;
    // a "." line right at the start ends an empty message; this must test _atDataStart:
    // an escaped ".." first line that arrived alone has already lost its escape dot
    if (this._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(DOT_CRLF)) {
      this._endDataMode(false, chunk.subarray(3), done);
      return;
    }
    if (this._atDataStart && len >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
      chunk = chunk.subarray(1);
      len--;
      this._atDataStart = false;
    }
    // A dot at the start of a line, at least two bytes into what is looked at (context
    // included) and with two bytes after it, as smtp-server checks it. First the dots
    // whose line end or CR is in the context, then the rest.
    const c = context.length;
    for (let j = Math.max(0, 2 - c); j < 2 && j < len - 2; j++) {
      const before = j >= 1 ? chunk[j - 1] : context[c - 1];
      if (chunk[j] !== DOT || before !== LF) continue;
      const twoBefore = j >= 2 ? chunk[j - 2] : context[c + j - 2];
      if (twoBefore === CR && chunk[j + 1] === CR && chunk[j + 2] === LF) {
        this.#end(chunk, j, done);
        return;
      }
      if (chunk[j + 1] === DOT) {
        this.#escape(chunk, j, done);
        return;
      }
    }
    const dots = new LineDots(chunk);
    for (let at = dots.next(1); at !== -1 && at + 1 < len - 2; at = dots.next(at + 1)) {
      const i = at + 1;
      if (chunk.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
        this.#end(chunk, i, done);
        return;
      }
      if (chunk[i + 1] === DOT) {
        this.#escape(chunk, i, done);
        return;
      }
    }
    // The end of the data may straddle this chunk and the next only if a dot is among
    // the last bytes (a tail with none holds no dot to drop and no end of data to cut at)
    const tail = Math.max(0, len - HOLD);
    let held: Buffer | false = false;
    if (chunk.indexOf(DOT, tail) !== -1) {
      held = chunk.subarray(tail);
      // all of a short chunk is held: looked at again next time, in the same context
      if (tail === 0) this.#context = context;
    } else {
      const last = len >= 2 ? chunk.subarray(len - 2) : Buffer.concat([context, chunk]).subarray(-2);
      this.#context = Buffer.from(last);
    }
    this._lastBytes = held;
    if (tail === len || (held && tail === 0)) {
      done();
      return;
    }
    const buf = held ? chunk.subarray(0, tail) : chunk;
    this._countDataBytes(buf.length);
    if (!dataStream?.writable) {
      done();
      return;
    }
    if (dataStream.write(buf) || dataStream.destroyed) {
      done();
      return;
    }
    // a stream that the application destroys never drains, it only closes
    const onDrain = (): void => {
      dataStream.removeListener('drain', onDrain);
      dataStream.removeListener('close', onDrain);
      done();
    };
    dataStream.once('drain', onDrain);
    dataStream.once('close', onDrain);
  }

  /** The end of data: the dot at `dot` and its CRLF are the terminator. */
  #end(chunk: Buffer, dot: number, done: Callback): void {
    const buf = chunk.subarray(0, dot);
    this._countDataBytes(buf.length);
    this._endDataMode(buf, chunk.subarray(dot + 3), done);
  }

  /** An escape dot at `dot`: pass on what comes before it and go on without it. */
  #escape(chunk: Buffer, dot: number, done: Callback): void {
    const dataStream = this._dataStream;
    const buf = chunk.subarray(0, dot);
    this._lastBytes = false;
    this._countDataBytes(buf.length);
    if (buf.length > 0 && dataStream?.writable) dataStream.write(buf);
    const rest = chunk.subarray(dot + 1);
    setImmediate(() => this._feedDataStream(rest, done));
  }
}
