// File names of uuencoded files in a part's decoded body. Mail clients (Outlook, Thunderbird,
// and uudeview-style tools) show a "begin 644 name" block in a text body as an attachment
// named by that line, so a .exe can ride in a text/plain part or in an x-uuencode one.
// The body streams past: only a line that starts with "begin" is looked at, found by a
// native search, and at most MAX_LINE bytes of it are kept.

import { Writable } from 'node:stream';
import { blockedExtension } from './filename.ts';
import type { ScanResult } from './scan-result.ts';

const LF = 0x0a;
const BEGIN = Buffer.from('begin');
/** The longest "begin" line read; a name is at most a few hundred bytes (MAX_PATH is 260). */
const MAX_LINE = 1024;
/** "begin 644 name" (uuencode) or "begin-base64 644 name" (uuencode -m); the mode is octal. */
const BEGIN_LINE = /^begin(?:-base64)?[ \t]+[0-7]{1,4}[ \t]+([^\r\n]+)/;

const UUENCODE_TYPES: ReadonlySet<string> = new Set([
  'application/x-uuencode',
  'application/uuencode',
  'application/x-uue',
  'text/x-uuencode',
]);
const UUENCODE_ENCODINGS: ReadonlySet<string> = new Set(['x-uuencode', 'uuencode', 'x-uue', 'uue']);

/** Whether clients may read uuencoded files in a part: any text, and the uuencode types and encodings. */
export function mayHoldUuencode(contentType: string | false, encoding: string | false): boolean {
  if (encoding && UUENCODE_ENCODINGS.has(encoding)) return true;
  if (contentType === false) return true;
  return contentType.startsWith('text/') || UUENCODE_TYPES.has(contentType);
}

/** The "begin" lines of a body written into it piece by piece; `verdict` once one names a blocked file. */
export class BeginLines {
  readonly #blocked: ReadonlySet<string>;
  verdict: ScanResult | null = null;
  /** Whether the next byte starts a line. */
  #lineStart = true;
  /** The start of a line that may be a "begin" line, kept until its end comes. */
  #carry: Buffer[] | null = null;
  #carryBytes = 0;

  constructor(blocked: ReadonlySet<string>) {
    this.#blocked = blocked;
  }

  write(chunk: Buffer): void {
    if (this.verdict === null) this.#read(chunk);
  }

  /** The body has ended: a line still kept is read as it is. */
  end(): void {
    if (this.verdict === null && this.#carry !== null) this.#checkLine(Buffer.concat(this.#carry));
    this.#carry = null;
  }

  #read(chunk: Buffer): void {
    let from = 0;
    if (this.#carry !== null) {
      // the rest of a line begun in an earlier chunk
      const lf = chunk.indexOf(LF);
      this.#keep(lf === -1 ? chunk : chunk.subarray(0, lf));
      if (lf === -1) return;
      this.#checkLine(Buffer.concat(this.#carry));
      this.#carry = null;
      from = lf + 1;
      this.#lineStart = true;
    }
    // each search starts past the last, so every byte is looked at a bounded number of times
    for (let at = chunk.indexOf(BEGIN, from); at !== -1; at = chunk.indexOf(BEGIN, from)) {
      if (at === 0 ? !this.#lineStart : chunk[at - 1] !== LF) {
        from = at + 1;
        continue;
      }
      const lf = chunk.indexOf(LF, at);
      if (lf === -1) {
        this.#startCarry(chunk.subarray(at));
        return;
      }
      this.#checkLine(chunk.subarray(at, lf));
      if (this.verdict !== null) return;
      from = lf + 1;
    }
    // the chunk may end inside the word "begin" at a line start
    const lastLf = chunk.lastIndexOf(LF);
    const tail = lastLf === -1 ? (this.#lineStart ? chunk.subarray(from) : null) : chunk.subarray(lastLf + 1);
    if (
      tail !== null &&
      tail.length > 0 &&
      tail.length < BEGIN.length &&
      BEGIN.subarray(0, tail.length).equals(tail)
    ) {
      this.#startCarry(tail);
      return;
    }
    this.#lineStart = chunk.length > 0 ? chunk[chunk.length - 1] === LF : this.#lineStart;
  }

  #startCarry(start: Buffer): void {
    this.#carry = [];
    this.#carryBytes = 0;
    this.#keep(start);
    this.#lineStart = false;
  }

  /** Adds to the kept line, up to MAX_LINE bytes (copied: the chunk itself is not kept). */
  #keep(piece: Buffer): void {
    const room = MAX_LINE - this.#carryBytes;
    if (room <= 0 || piece.length === 0) return;
    const kept = Buffer.from(piece.subarray(0, room));
    this.#carry?.push(kept);
    this.#carryBytes += kept.length;
  }

  #checkLine(line: Buffer): void {
    const match = BEGIN_LINE.exec(line.subarray(0, MAX_LINE).toString('latin1'));
    const name = match?.[1];
    if (name === undefined || this.verdict !== null) return;
    for (const reading of new Set([name, Buffer.from(name, 'latin1').toString('utf8')])) {
      const extension = blockedExtension(reading, this.#blocked);
      if (extension !== null) {
        this.verdict = { kind: 'blocked', filename: reading, extension };
        return;
      }
    }
  }
}

/** BeginLines as a Writable, for a body that streams out of a decoder: write it, then read `result()`. */
export class UuencodeScan extends Writable {
  readonly #lines: BeginLines;
  readonly #result: Promise<ScanResult>;

  constructor(blocked: ReadonlySet<string>) {
    super();
    this.#lines = new BeginLines(blocked);
    this.#result = new Promise((resolve, reject) => {
      this.once('finish', () => resolve(this.#lines.verdict ?? { kind: 'clean' }));
      this.once('error', reject);
    });
    this.#result.catch(() => {});
  }

  result(): Promise<ScanResult> {
    return this.#result;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.#lines.write(chunk);
    callback();
  }

  override _final(callback: () => void): void {
    this.#lines.end();
    callback();
  }
}
