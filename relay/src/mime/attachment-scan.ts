// Streaming check for attachments with a blocked file name extension. The message flows
// through mailsplit (its splitter, sped up and bounded in splitter.ts); only part headers
// are kept, bodies are dropped as they pass, except embedded messages, whose (decoded)
// bodies stream into a nested scan of their own, zip archives, whose decoded bodies
// stream past a reader of their file names (zip-scan.ts), and text parts, whose decoded
// bodies are searched for uuencoded files (uuencode-scan.ts).
import { once } from 'node:events';
import { type Transform, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import libmime from 'libmime';
import { DEFAULT_MIME_LIMITS } from '../config/schema.ts';
import { blockedExtension, headerFileNames, normaliseExtensions } from './filename.ts';
import type { ScanResult } from './scan-result.ts';
import { FastSplitter, MimeLimitExceeded, type MimeLimits } from './splitter.ts';
import { BeginLines, mayHoldUuencode, UuencodeScan } from './uuencode-scan.ts';
import { isZipPart, ZipScan } from './zip-scan.ts';

/** The policy default list; the config schema owns it. */
export { DEFAULT_BLOCKED_EXTENSIONS } from '../config/schema.ts';
export { blockedExtension } from './filename.ts';

export interface BlockedAttachment {
  filename: string;
  extension: string;
}

export type { ScanResult } from './scan-result.ts';
export type { MimeBound, MimeLimits } from './splitter.ts';

// Embedded messages nest; a bound keeps a crafted message from costing unbounded work.
const MAX_NESTING = 8;
// mailsplit re-concatenates a line that spans chunks on every chunk, so an endless line
// would cost memory and quadratic time. RFC 5322 allows 998 octets; this is far above it.
const MAX_LINE_BYTES = 1024 * 1024;
const LF = 0x0a;
// After a part's header the event loop gets a turn once the scan has run this long since
// the last one: a socket read can hand over 2 MB at once (libuv reads up to 32 × 64 KB), and
// hundreds of parts in one turn held the loop for 0.5 s. A turn after every part (three a
// message with one attachment) cost an event-loop pass each where nothing was waiting.
const TURN_MS = 2;

// The parts of mailsplit (untyped CommonJS) this file uses.
interface MailsplitNode {
  type: 'node';
  contentType: string | false;
  encoding: string | false;
  multipart: string | false;
  headers: { get(key: string): string[] };
  getDecoder(): Transform;
}
interface MailsplitChunk {
  type: 'body' | 'data';
  node: MailsplitNode;
  value: Buffer;
}
type MailsplitPart = MailsplitNode | MailsplitChunk;

interface Embedded {
  node: MailsplitNode;
  decoder: Transform;
  /** A nested message's scan, an archive's, or a text's (for uuencoded files). */
  scan: Writable & { result(): Promise<ScanResult> };
}

class MessageScan extends Writable {
  readonly #blocked: ReadonlySet<string>;
  readonly #archives: boolean;
  readonly #limits: MimeLimits;
  readonly #depth: number;
  readonly #splitter: Transform;
  readonly #parts: Writable;
  readonly #result: Promise<ScanResult>;
  #verdict: ScanResult | null = null;
  #lineBytes = 0;
  #embedded: Embedded | null = null;
  /** A text part read for uuencoded files as it passes. */
  #text: { node: MailsplitNode; lines: BeginLines } | null = null;
  // Completes a write or final that waits on the parser; called early once the verdict is in.
  #release: (() => void) | null = null;
  /** When the event loop last had a turn from this scan (performance.now()). */
  #turnAt = performance.now();

  constructor(blocked: ReadonlySet<string>, archives: boolean, limits: MimeLimits, depth: number) {
    super();
    this.#blocked = blocked;
    this.#archives = archives;
    this.#limits = limits;
    this.#depth = depth;
    // Embedded messages are scanned by a nested MessageScan rather than by mailsplit, which
    // parses them only when inline and not base64/quoted-printable encoded.
    this.#splitter = new FastSplitter({ ignoreEmbedded: true, limits });
    this.#parts = new Writable({
      objectMode: true,
      write: (part: MailsplitPart, _encoding, callback) => {
        this.#onPart(part).then(
          // a part's header (its parameters parsed) costs up to a few ms at the bounds
          () => (part.type === 'node' ? this.#yieldAfterHeader(callback) : callback()),
          (err: unknown) => callback(asError(err)),
        );
      },
      final: (callback) => {
        this.#closeText();
        this.#closeEmbedded().then(
          () => callback(),
          (err: unknown) => callback(asError(err)),
        );
      },
    });
    this.#splitter.on('error', (err: unknown) => this.#settle(malformed(err)));
    this.#parts.on('error', (err: unknown) => this.#settle(malformed(err)));
    this.#splitter.pipe(this.#parts);
    this.#result = finished(this).then(() => this.#verdict ?? { kind: 'clean' });
    // Callers may never ask for the result; a destroyed scanner must not crash the process.
    this.#result.catch(() => {});
  }

  #yieldAfterHeader(callback: () => void): void {
    if (performance.now() - this.#turnAt < TURN_MS) {
      callback();
      return;
    }
    setImmediate(() => {
      this.#turnAt = performance.now();
      callback();
    });
  }

  /** Resolves once the input has finished; rejects only if the scanner is destroyed first. */
  result(): Promise<ScanResult> {
    return this.#result;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.#verdict === null) this.#checkLineLength(chunk);
    // After a verdict the input is drained unread, so the writer never stalls. The verdict
    // can also come while the splitter handles this very chunk (it parses synchronously).
    if (this.#verdict !== null || this.#splitter.write(chunk) || this.#verdict !== null) callback();
    else this.#waitFor(this.#splitter, 'drain', callback);
  }

  override _final(callback: () => void): void {
    if (this.#verdict !== null) {
      callback();
      return;
    }
    this.#waitFor(this.#parts, 'finish', callback);
    this.#splitter.end();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#teardown();
    callback(err);
  }

  #waitFor(emitter: Transform | Writable, event: 'drain' | 'finish', done: () => void): void {
    const release = (): void => {
      emitter.off(event, release);
      this.#release = null;
      done();
    };
    emitter.on(event, release);
    this.#release = release;
  }

  #checkLineLength(chunk: Buffer): void {
    const lf = chunk.lastIndexOf(LF);
    this.#lineBytes = lf === -1 ? this.#lineBytes + chunk.length : chunk.length - lf - 1;
    if (this.#lineBytes > MAX_LINE_BYTES) {
      this.#settle({ kind: 'malformed', detail: `line longer than ${MAX_LINE_BYTES} bytes` });
    }
  }

  async #onPart(part: MailsplitPart): Promise<void> {
    if (this.#text !== null && (part.type === 'node' || part.node !== this.#text.node)) this.#closeText();
    if (this.#embedded !== null && (part.type === 'node' || part.node !== this.#embedded.node)) {
      await this.#closeEmbedded();
    }
    if (this.#verdict !== null) return;
    if (part.type === 'node') this.#inspect(part);
    else if (part.type !== 'body') return;
    else if (this.#text?.node === part.node) this.#text.lines.write(part.value);
    else if (this.#embedded?.node === part.node) await this.#feedEmbedded(part.value);
  }

  #closeText(): void {
    const text = this.#text;
    if (text === null) return;
    this.#text = null;
    text.lines.end();
    if (text.lines.verdict !== null) this.#settle(text.lines.verdict);
  }

  #inspect(node: MailsplitNode): void {
    const names = fileNames(node);
    const found = firstBlocked(names, this.#blocked);
    if (found !== null) this.#settle({ kind: 'blocked', ...found });
    else if (node.contentType === 'message/rfc822' || node.contentType === 'message/global') {
      this.#openEmbedded(node);
    } else if (this.#archives && isZipPart(node.contentType, names)) {
      this.#openBody(node, new ZipScan(names[0] ?? 'attachment.zip', this.#blocked));
    } else if (!node.multipart && mayHoldUuencode(node.contentType, node.encoding)) {
      // a body that needs no decoding is read as it passes, without a stream
      if (node.encoding === 'base64' || node.encoding === 'quoted-printable') {
        this.#openBody(node, new UuencodeScan(this.#blocked));
      } else this.#text = { node, lines: new BeginLines(this.#blocked) };
    }
  }

  /** The part's decoded body goes to the scan. */
  #openBody(node: MailsplitNode, scan: Embedded['scan']): void {
    const decoder = node.getDecoder();
    decoder.on('error', (err: unknown) => this.#settle(malformed(err)));
    decoder.pipe(scan);
    this.#embedded = { node, decoder, scan };
  }

  #openEmbedded(node: MailsplitNode): void {
    if (this.#depth >= MAX_NESTING) {
      this.#settle({ kind: 'malformed', detail: `messages nested deeper than ${MAX_NESTING}` });
      return;
    }
    const decoder = node.getDecoder();
    const scan = new MessageScan(this.#blocked, this.#archives, this.#limits, this.#depth + 1);
    decoder.on('error', (err: unknown) => this.#settle(malformed(err)));
    decoder.pipe(scan);
    this.#embedded = { node, decoder, scan };
  }

  async #feedEmbedded(chunk: Buffer): Promise<void> {
    const decoder = this.#embedded?.decoder;
    if (decoder !== undefined && !decoder.write(chunk)) await once(decoder, 'drain');
  }

  async #closeEmbedded(): Promise<void> {
    const embedded = this.#embedded;
    if (embedded === null) return;
    this.#embedded = null;
    embedded.decoder.end();
    const result = await embedded.scan.result();
    if (result.kind !== 'clean') this.#settle(result);
  }

  #settle(verdict: ScanResult): void {
    if (this.#verdict !== null) return;
    this.#verdict = verdict;
    this.#teardown();
    this.#release?.();
  }

  #teardown(): void {
    this.#splitter.destroy();
    this.#parts.destroy();
    this.#embedded?.decoder.destroy();
    this.#embedded?.scan.destroy();
  }
}

/** The policy's list, normalised once rather than for every message (keyed by the config's array). */
const normalised = new WeakMap<readonly string[], ReadonlySet<string>>();

/**
 * Every parameter that carries a file name has "name" in its key (name, filename, and
 * their RFC 2231 forms name*, filename*0*, ...), and unfolding a header cannot make one:
 * a header line without it names no file, and most (boundaries, charsets) have none.
 */
const NAMES_A_FILE = /name/i;

/**
 * A Writable: write the raw message bytes (CRLF line endings) into it, then read
 * `result()`. Streams; after a verdict the rest of the input is drained unread.
 */
export class AttachmentScanner extends MessageScan {
  /** inspectArchives: the names inside zip attachments are checked too; limits: bounds on the MIME structure. */
  constructor(
    blockedExtensions: readonly string[],
    options: { inspectArchives?: boolean; limits?: MimeLimits } = {},
  ) {
    let blocked = normalised.get(blockedExtensions);
    if (!blocked) {
      blocked = normaliseExtensions(blockedExtensions);
      normalised.set(blockedExtensions, blocked);
    }
    super(blocked, options.inspectArchives ?? true, options.limits ?? DEFAULT_MIME_LIMITS, 0);
  }
}

/** The file names in the part's Content-Disposition and Content-Type headers. */
function fileNames(node: MailsplitNode): string[] {
  const names: string[] = [];
  for (const header of ['content-disposition', 'content-type']) {
    for (const line of node.headers.get(header)) {
      if (!NAMES_A_FILE.test(line)) continue;
      names.push(...headerFileNames(headerValue(line)));
    }
  }
  return names;
}

/** The first of the names with a blocked extension. */
function firstBlocked(names: readonly string[], blocked: ReadonlySet<string>): BlockedAttachment | null {
  for (const filename of names) {
    const extension = blockedExtension(filename, blocked);
    if (extension !== null) return { filename, extension };
  }
  return null;
}

/** Unfolded value of a raw header line; mailsplit keeps lines as binary strings. */
function headerValue(line: string): string {
  return libmime.decodeHeader(Buffer.from(line, 'latin1').toString('utf8')).value;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function malformed(err: unknown): ScanResult {
  if (err instanceof MimeLimitExceeded) return { kind: 'over-limit', bound: err.bound, limit: err.limit };
  return { kind: 'malformed', detail: err instanceof Error ? err.message : String(err) };
}
