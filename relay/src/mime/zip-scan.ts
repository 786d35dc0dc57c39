// File names inside a zip attachment, read as the decoded attachment streams past: a
// .exe inside invoice.zip is as much an executable attachment as invoice.exe. Nothing
// is decompressed. The names come from two places, so that a damaged or unusual archive
// cannot hide one: each entry's local header as it passes (its compressed data is
// skipped by its size), and the central directory at the end, read from the last
// TAIL_BYTES of the stream (it lists every entry, also those whose sizes come after
// their data). An archive inside the archive is not opened.

import { Writable } from 'node:stream';
import type { ScanResult } from './attachment-scan.ts';
import { blockedExtension, normaliseExtensions } from './filename.ts';

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_DIRECTORY = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const LOCAL_HEADER_BYTES = 30;
const CENTRAL_HEADER_BYTES = 46;
const END_OF_DIRECTORY_BYTES = 22;
/** The end of directory record has a comment of at most 65,535 bytes after it. */
const MAX_COMMENT = 0xffff;
/** How much of the end of the archive is kept for its central directory: ~20,000 names. */
export const TAIL_BYTES = 1024 * 1024;
const UTF8_NAMES = 0x0800;
const SIZE_AFTER_DATA = 0x0008;

function decodeName(bytes: Buffer, flags: number): string {
  return bytes.toString(flags & UTF8_NAMES ? 'utf8' : 'latin1');
}

const ZIP = normaliseExtensions(['zip']);

/** Whether a part is a zip archive, by its media type or (read as for blocked names) its file name. */
export function isZipPart(contentType: string | false, filenames: readonly string[]): boolean {
  if (contentType === 'application/zip' || contentType === 'application/x-zip-compressed') return true;
  return filenames.some((name) => blockedExtension(name, ZIP) !== null);
}

/** Write an attachment's decoded bytes into it, then read `result()`. */
export class ZipScan extends Writable {
  readonly #archive: string;
  readonly #blocked: ReadonlySet<string>;
  readonly #result: Promise<ScanResult>;
  #verdict: ScanResult | null = null;
  // local headers, in stream order
  #pending: Buffer = Buffer.alloc(0);
  #skip = 0;
  #sequential = true;
  // the end of the stream, for the central directory
  #tail: Buffer[] = [];
  #tailBytes = 0;
  /** Bytes of the stream no longer in the tail. */
  #dropped = 0;

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
      this.#keepTail(chunk);
      if (this.#sequential) this.#readLocalHeaders(chunk);
    }
    callback();
  }

  override _final(callback: () => void): void {
    if (this.#verdict === null) this.#readCentralDirectory(Buffer.concat(this.#tail, this.#tailBytes));
    this.#tail = [];
    callback();
  }

  #check(name: string): void {
    if (this.#verdict !== null) return;
    // blockedExtension reads the last path segment, so a name in a folder counts too
    const extension = blockedExtension(name, this.#blocked);
    if (extension !== null) {
      this.#verdict = { kind: 'blocked', filename: `${this.#archive}/${name}`, extension };
      this.#tail = [];
      this.#pending = Buffer.alloc(0);
    }
  }

  #keepTail(chunk: Buffer): void {
    this.#tail.push(chunk);
    this.#tailBytes += chunk.length;
    while (this.#tail.length > 1 && this.#tailBytes - (this.#tail[0]?.length ?? 0) >= TAIL_BYTES) {
      const head = this.#tail.shift()?.length ?? 0;
      this.#tailBytes -= head;
      this.#dropped += head;
    }
  }

  /** Local headers one after another; stops at the central directory or anything else. */
  #readLocalHeaders(chunk: Buffer): void {
    let data = chunk;
    if (this.#skip > 0) {
      const skipped = Math.min(this.#skip, data.length);
      this.#skip -= skipped;
      data = data.subarray(skipped);
      if (data.length === 0) return;
    }
    let buf = this.#pending.length === 0 ? data : Buffer.concat([this.#pending, data]);
    for (;;) {
      if (buf.length < LOCAL_HEADER_BYTES) break;
      if (buf.readUInt32LE(0) !== LOCAL_HEADER) {
        // the central directory (or something this reader does not follow): the end tells
        this.#sequential = false;
        buf = Buffer.alloc(0);
        break;
      }
      const flags = buf.readUInt16LE(6);
      const compressed = buf.readUInt32LE(18);
      const nameLength = buf.readUInt16LE(26);
      const extraLength = buf.readUInt16LE(28);
      const headerBytes = LOCAL_HEADER_BYTES + nameLength + extraLength;
      if (buf.length < headerBytes) break;
      this.#check(decodeName(buf.subarray(LOCAL_HEADER_BYTES, LOCAL_HEADER_BYTES + nameLength), flags));
      if (this.#verdict !== null) return;
      if (flags & SIZE_AFTER_DATA || compressed === 0xffffffff) {
        // the size comes after the data (or in a zip64 field): only the directory knows
        this.#sequential = false;
        buf = Buffer.alloc(0);
        break;
      }
      const rest = buf.length - headerBytes;
      if (rest < compressed) {
        this.#skip = compressed - rest;
        buf = Buffer.alloc(0);
        break;
      }
      buf = buf.subarray(headerBytes + compressed);
    }
    // what is left is a header's first bytes: a copy, so the chunk itself is not kept
    this.#pending = Buffer.from(buf);
  }

  /** The names in the central directory, found from the end of directory record. */
  #readCentralDirectory(tail: Buffer): void {
    const from = Math.max(0, tail.length - END_OF_DIRECTORY_BYTES - MAX_COMMENT);
    let end = -1;
    for (let i = tail.length - END_OF_DIRECTORY_BYTES; i >= from; i--) {
      if (tail.readUInt32LE(i) === END_OF_DIRECTORY) {
        end = i;
        break;
      }
    }
    if (end < 0) return; // no directory in reach: the local headers were all there was
    let size = tail.readUInt32LE(end + 12);
    let directoryEnd = end;
    const locator = end - 20;
    if (size === 0xffffffff && locator >= 0 && tail.readUInt32LE(locator) === ZIP64_LOCATOR) {
      // zip64: the sizes are in the zip64 end record, just before the locator
      const record = locator - 56;
      if (record < 0 || tail.readUInt32LE(record) !== ZIP64_END_OF_DIRECTORY) return;
      size = Number(tail.readBigUInt64LE(record + 40));
      directoryEnd = record;
    }
    let at = directoryEnd - size;
    if (at < 0) {
      // a directory larger than the whole archive is no directory; one that began before
      // the bytes kept cannot be read
      if (this.#dropped === 0) return;
      this.#verdict = {
        kind: 'malformed',
        detail: `the directory of ${this.#archive} is too large to inspect`,
      };
      return;
    }
    while (at + CENTRAL_HEADER_BYTES <= directoryEnd && tail.readUInt32LE(at) === CENTRAL_HEADER) {
      const flags = tail.readUInt16LE(at + 8);
      const nameLength = tail.readUInt16LE(at + 28);
      const extraLength = tail.readUInt16LE(at + 30);
      const commentLength = tail.readUInt16LE(at + 32);
      const name = tail.subarray(at + CENTRAL_HEADER_BYTES, at + CENTRAL_HEADER_BYTES + nameLength);
      this.#check(decodeName(name, flags));
      if (this.#verdict !== null) return;
      at += CENTRAL_HEADER_BYTES + nameLength + extraLength + commentLength;
    }
  }
}
