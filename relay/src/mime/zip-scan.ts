// File names inside a zip attachment, read as the decoded attachment streams past: a
// .exe inside invoice.zip is as much an executable attachment as invoice.exe. Nothing
// is decompressed. Tools disagree on where the names are: Explorer, 7-Zip and unzip
// follow the end record to the central directory, streaming extractors (and Java's
// ZipInputStream) walk the local headers, and either can be made to lie to the other
// (an end record pointing at a decoy directory, a directory that leaves entries out,
// junk before the first entry, an entry whose size comes after its data). So neither
// is trusted: every local and every central directory header in the stream is read,
// wherever it is, found by its signature (a native search), together with the Info-ZIP
// Unicode Path extra field that some tools prefer to the header's name. A signature
// by chance in compressed data (about once in 4 GB) only adds a name that is not
// blocked. An archive stored uncompressed inside is read along; a compressed one is
// not opened.

import { Writable } from 'node:stream';
import { blockedExtension, normaliseExtensions } from './filename.ts';
import type { ScanResult } from './scan-result.ts';

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const PK = Buffer.from('PK');
const LOCAL_HEADER_BYTES = 30;
const CENTRAL_HEADER_BYTES = 46;
/** Input is gathered into blocks of at least this much before it is searched. */
const BLOCK_BYTES = 64 * 1024;
const UNICODE_PATH_FIELD = 0x7075;
const UTF8_NAMES = 0x0800;

const ZIP = normaliseExtensions(['zip']);

/** Whether a part is a zip archive, by its media type or (read as for blocked names) its file name. */
export function isZipPart(contentType: string | false, filenames: readonly string[]): boolean {
  if (contentType === 'application/zip' || contentType === 'application/x-zip-compressed') return true;
  return filenames.some((name) => blockedExtension(name, ZIP) !== null);
}

/**
 * Write an attachment's decoded bytes into it, then read `result()`. Work is linear in the
 * input: each byte is searched once, and copied at most a few times (a block, and the
 * unfinished headers at its end carried into the next: a header is at most 46 bytes and
 * a name and an extra field of 65,535 bytes each); the
 * names and extra fields read are bounded by the input's size, as headers of a real
 * archive do not overlap.
 */
export class ZipScan extends Writable {
  readonly #archive: string;
  readonly #blocked: ReadonlySet<string>;
  readonly #result: Promise<ScanResult>;
  #verdict: ScanResult | null = null;
  /** Chunks not yet searched. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The end of the last block: from the first header not yet complete, or its last 3 bytes. */
  #carry: Buffer = Buffer.alloc(0);
  /** Where in the carry the search for signatures goes on. */
  #searched = 0;
  /** Headers in the carry whose name or extra field had not all come yet. */
  #incomplete: number[] = [];
  #received = 0;
  /** Bytes of names and extra fields read. */
  #read = 0;

  constructor(archive: string, blocked: ReadonlySet<string>) {
    super();
    this.#archive = archive;
    this.#blocked = blocked;
    this.#result = new Promise((resolve, reject) => {
      this.once('finish', () => resolve(this.#verdict ?? { kind: 'clean' }));
      this.once('error', reject);
    });
    this.#result.catch(() => {});
  }

  result(): Promise<ScanResult> {
    return this.#result;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.#verdict === null) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      this.#received += chunk.length;
      if (this.#pendingBytes >= BLOCK_BYTES) this.#search(false);
    }
    callback();
  }

  override _final(callback: () => void): void {
    if (this.#verdict === null) this.#search(true);
    this.#pending = [];
    this.#carry = Buffer.alloc(0);
    callback();
  }

  /** Reads every header in the carry and the pending chunks; `last`: no more input follows. */
  #search(last: boolean): void {
    const block = Buffer.concat([this.#carry, ...this.#pending]);
    this.#pending = [];
    this.#pendingBytes = 0;
    const incomplete: number[] = [];
    for (const at of this.#incomplete) {
      if (!this.#header(block, at, last)) incomplete.push(at);
      if (this.#verdict !== null) return;
    }
    let at = block.indexOf(PK, this.#searched);
    for (; at !== -1 && at + 4 <= block.length; at = block.indexOf(PK, at + 1)) {
      const signature = block.readUInt32LE(at);
      if (signature !== LOCAL_HEADER && signature !== CENTRAL_HEADER) continue;
      if (!this.#header(block, at, last)) incomplete.push(at);
      if (this.#verdict !== null) return;
    }
    // a signature may start in the last 3 bytes; headers not yet complete are kept whole
    const searched = Math.max(this.#searched, block.length - 3, 0);
    // (the incomplete headers are in stream order: the first is the earliest)
    const keepFrom = Math.min(searched, incomplete[0] ?? searched);
    this.#carry = Buffer.from(block.subarray(keepFrom));
    this.#searched = searched - keepFrom;
    this.#incomplete = incomplete.map((position) => position - keepFrom);
  }

  /** Reads the header at `at`; false when its name or extra field is not all there yet. */
  #header(block: Buffer, at: number, last: boolean): boolean {
    const local = block.readUInt32LE(at) === LOCAL_HEADER;
    const fixed = local ? LOCAL_HEADER_BYTES : CENTRAL_HEADER_BYTES;
    if (at + fixed > block.length) return last;
    const flags = block.readUInt16LE(at + (local ? 6 : 8));
    const nameLength = block.readUInt16LE(at + (local ? 26 : 28));
    const extraLength = block.readUInt16LE(at + (local ? 28 : 30));
    const nameEnd = at + fixed + nameLength;
    const end = nameEnd + extraLength;
    // at the end of the input, what there is of a cut-off header is read
    if (end > block.length && !last) return false;
    this.#read += Math.min(end, block.length) - at - fixed;
    if (this.#read > this.#received) {
      // headers that overlap: no archive a tool wrote, and reading them all would cost more than the input
      this.#verdict = { kind: 'malformed', detail: `the headers of ${this.#archive} overlap` };
      return true;
    }
    const name = block.subarray(at + fixed, Math.min(nameEnd, block.length));
    this.#check(name.toString(flags & UTF8_NAMES ? 'utf8' : 'latin1'));
    this.#readExtra(block.subarray(Math.min(nameEnd, block.length), Math.min(end, block.length)));
    return true;
  }

  /** The Info-ZIP Unicode Path field (version, CRC-32 of the header name, the UTF-8 name). */
  #readExtra(extra: Buffer): void {
    for (let i = 0; i + 4 <= extra.length && this.#verdict === null; ) {
      const id = extra.readUInt16LE(i);
      const size = extra.readUInt16LE(i + 2);
      if (id === UNICODE_PATH_FIELD && size > 5) {
        this.#check(extra.subarray(i + 9, Math.min(i + 4 + size, extra.length)).toString('utf8'));
      }
      i += 4 + size;
    }
  }

  #check(name: string): void {
    if (this.#verdict !== null) return;
    // blockedExtension reads the last path segment, so a name in a folder counts too
    const extension = blockedExtension(name, this.#blocked);
    if (extension !== null) {
      this.#verdict = { kind: 'blocked', filename: `${this.#archive}/${name}`, extension };
      this.#pending = [];
      this.#carry = Buffer.alloc(0);
    }
  }
}
