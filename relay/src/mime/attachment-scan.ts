// Streaming check for attachments with a blocked file name extension. The message flows
// through mailsplit (its splitter, sped up and bounded in splitter.ts); only part headers
// are kept, bodies are dropped as they pass, except embedded messages, whose (decoded)
// bodies stream into a nested scan of their own, zip archives, whose decoded bodies
// stream past a reader of their file names (zip-scan.ts), and text parts, whose decoded
// bodies are searched for uuencoded files (uuencode-scan.ts).
// A message that is one plain text part (plain-text.ts says which, from its header alone)
// can hold no attachment but a uuencoded one: its body goes straight to that search,
// without mailsplit, which would find the same one part and do the same.
import { once } from 'node:events';
import { type Transform, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import libmime from 'libmime';
import { DEFAULT_MIME_LIMITS } from '../config/schema.ts';
import { blockedExtension, headerFileNames, NAMES_A_FILE, normaliseExtensions } from './filename.ts';
import { headerEnd, isPlainText } from './plain-text.ts';
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
const EMPTY = Buffer.alloc(0);
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
  /** Whether a plain text message skips mailsplit (plain-text.ts); off only to compare both ways. */
  readonly #plainText: boolean;
  readonly #limits: MimeLimits;
  readonly #depth: number;
  /** mailsplit's splitter: made once the header says MIME is needed. */
  #splitter: Transform | null = null;
  /** The part being handled while the splitter is paused for it. */
  #handling: Promise<void> | null = null;
  /** Until the header has ended: its bytes, kept to decide how the message is read. */
  #head: Buffer[] | null = [];
  #headBytes = 0;
  /** The last two bytes of the header seen so far. */
  #headTail: Buffer = EMPTY;
  /** A message that is one plain text part: its body, searched for uuencoded files. */
  #plain: BeginLines | null = null;
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

  constructor(
    blocked: ReadonlySet<string>,
    archives: boolean,
    limits: MimeLimits,
    depth: number,
    plainText: boolean,
  ) {
    super();
    this.#blocked = blocked;
    this.#archives = archives;
    this.#plainText = plainText;
    if (!plainText) this.#head = null;
    this.#limits = limits;
    this.#depth = depth;
    this.#result = finished(this).then(() => this.#verdict ?? { kind: 'clean' });
    // Callers may never ask for the result; a destroyed scanner must not crash the process.
    this.#result.catch(() => {});
  }

  /**
   * The MIME path: mailsplit's splitter, each part it emits handled as it comes. A part
   * that needs waiting for (an embedded message's decoder, a turn of the event loop after
   * a part's header) pauses the splitter until it is done; most parts need none.
   */
  #startMime(): Transform {
    // Embedded messages are scanned by a nested MessageScan rather than by mailsplit, which
    // parses them only when inline and not base64/quoted-printable encoded.
    const splitter = new FastSplitter({ ignoreEmbedded: true, limits: this.#limits });
    splitter.on('data', (part: MailsplitPart) => {
      if (this.#verdict !== null) return;
      let wait: Promise<void> | null;
      try {
        wait = this.#onPart(part);
      } catch (err: unknown) {
        this.#settle(malformed(err));
        return;
      }
      // a part's header (its parameters parsed) costs up to a few ms at the bounds
      const turn = part.type === 'node';
      if (wait === null && !(turn && this.#turnDue())) return;
      splitter.pause();
      const handled = (wait ?? Promise.resolve())
        .then(() => (turn && this.#turnDue() ? this.#nextTurn() : undefined))
        .then(
          () => {
            this.#handling = null;
            splitter.resume();
          },
          (err: unknown) => this.#settle(malformed(err)),
        );
      this.#handling = handled;
    });
    // 'end' comes once the splitter has nothing buffered, even while it is paused for the
    // last part: that part is finished first
    splitter.on('end', () => {
      (this.#handling ?? Promise.resolve())
        .then(() => {
          if (this.#verdict !== null) return;
          this.#closeText();
          return this.#closeEmbedded();
        })
        .then(
          () => this.#release?.(),
          (err: unknown) => this.#settle(malformed(err)),
        );
    });
    splitter.on('error', (err: unknown) => this.#settle(malformed(err)));
    this.#splitter = splitter;
    return splitter;
  }

  #turnDue(): boolean {
    return performance.now() - this.#turnAt >= TURN_MS;
  }

  #nextTurn(): Promise<void> {
    return new Promise((resolve) =>
      setImmediate(() => {
        this.#turnAt = performance.now();
        resolve();
      }),
    );
  }

  /** Resolves once the input has finished; rejects only if the scanner is destroyed first. */
  result(): Promise<ScanResult> {
    return this.#result;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.#verdict === null) this.#checkLineLength(chunk);
    if (this.#verdict !== null) {
      // after a verdict the input is drained unread, so the writer never stalls
      callback();
      return;
    }
    if (this.#head !== null) {
      this.#readHead(chunk, callback);
      return;
    }
    if (this.#plain !== null) {
      this.#readPlain(chunk);
      callback();
      return;
    }
    this.#toSplitter(chunk, callback);
  }

  #toSplitter(chunk: Buffer, callback: () => void): void {
    const splitter = this.#splitter ?? this.#startMime();
    // the verdict can come while the splitter handles this very chunk (it parses synchronously)
    if (splitter.write(chunk) || this.#verdict !== null) callback();
    else this.#waitFor(splitter, 'drain', callback);
  }

  /**
   * Keeps the header until it ends, then decides: one plain text part goes to the search
   * for uuencoded files, anything else (or a header past maxHeaderBytes) to mailsplit.
   */
  #readHead(chunk: Buffer, callback: () => void): void {
    const head = this.#head ?? [];
    const before = this.#headBytes;
    head.push(chunk);
    this.#headBytes += chunk.length;
    // only the new bytes are searched, with the two before them (an empty line can
    // straddle two pieces): a header sent a byte at a time is not searched from its start
    // at every byte
    const tail = this.#headTail;
    const window = tail.length === 0 ? chunk : Buffer.concat([tail, chunk]);
    const found = headerEnd(window, tail.length);
    this.#headTail = window.subarray(Math.max(0, window.length - 2));
    if (found === -1 && this.#headBytes <= this.#limits.maxHeaderBytes) {
      callback();
      return;
    }
    this.#head = null;
    const bytes = head.length === 1 ? chunk : Buffer.concat(head, this.#headBytes);
    const end = found === -1 ? -1 : before - tail.length + found;
    if (end !== -1 && isPlainText(bytes.subarray(0, end), this.#limits)) {
      this.#plain = new BeginLines(this.#blocked);
      this.#readPlain(bytes.subarray(end));
      callback();
      return;
    }
    this.#toSplitter(bytes, callback);
  }

  #readPlain(chunk: Buffer): void {
    const lines = this.#plain;
    if (lines === null) return;
    lines.write(chunk);
    if (lines.verdict !== null) this.#settle(lines.verdict);
  }

  override _final(callback: () => void): void {
    if (this.#verdict !== null) {
      callback();
      return;
    }
    const plain = this.#plain;
    if (plain !== null) {
      plain.end();
      if (plain.verdict !== null) this.#settle(plain.verdict);
      callback();
      return;
    }
    const finish = (): void => {
      const splitter = this.#splitter;
      if (this.#verdict !== null || splitter === null) {
        callback();
        return;
      }
      // done once the splitter has ended and the last part is closed (or at a verdict)
      this.#release = () => {
        this.#release = null;
        callback();
      };
      splitter.end();
    };
    // a message that ended inside its header (no empty line): mailsplit reads it
    const head = this.#head;
    this.#head = null;
    if (head !== null && head.length > 0) this.#toSplitter(Buffer.concat(head, this.#headBytes), finish);
    else {
      if (this.#splitter === null) this.#startMime();
      finish();
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#teardown();
    callback(err);
  }

  #waitFor(emitter: Transform, event: 'drain', done: () => void): void {
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

  /** Handles one part; a promise when the splitter must wait for it. */
  #onPart(part: MailsplitPart): Promise<void> | null {
    if (this.#text !== null && (part.type === 'node' || part.node !== this.#text.node)) this.#closeText();
    if (this.#embedded !== null && (part.type === 'node' || part.node !== this.#embedded.node)) {
      return this.#closeEmbedded().then(() => this.#onPart(part) ?? undefined);
    }
    if (this.#verdict !== null) return null;
    if (part.type === 'node') this.#inspect(part);
    else if (part.type !== 'body') return null;
    else if (this.#text?.node === part.node) this.#text.lines.write(part.value);
    else if (this.#embedded?.node === part.node) return this.#feedEmbedded(part.value);
    return null;
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
    const scan = new MessageScan(
      this.#blocked,
      this.#archives,
      this.#limits,
      this.#depth + 1,
      this.#plainText,
    );
    decoder.on('error', (err: unknown) => this.#settle(malformed(err)));
    decoder.pipe(scan);
    this.#embedded = { node, decoder, scan };
  }

  #feedEmbedded(chunk: Buffer): Promise<void> | null {
    const decoder = this.#embedded?.decoder;
    if (decoder !== undefined && !decoder.write(chunk)) return once(decoder, 'drain').then(() => {});
    return null;
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
    this.#head = null;
    this.#splitter?.destroy();
    this.#embedded?.decoder.destroy();
    this.#embedded?.scan.destroy();
  }
}

/** The policy's list, normalised once rather than for every message (keyed by the config's array). */
const normalised = new WeakMap<readonly string[], ReadonlySet<string>>();

/**
 * A Writable: write the raw message bytes (CRLF line endings) into it, then read
 * `result()`. Streams; after a verdict the rest of the input is drained unread.
 */
export class AttachmentScanner extends MessageScan {
  /** inspectArchives: the names inside zip attachments are checked too; limits: bounds on the MIME structure. */
  constructor(
    blockedExtensions: readonly string[],
    options: {
      inspectArchives?: boolean;
      limits?: MimeLimits;
      /** false: a plain text message goes through mailsplit too (for tests that compare). */
      plainText?: boolean;
    } = {},
  ) {
    let blocked = normalised.get(blockedExtensions);
    if (!blocked) {
      blocked = normaliseExtensions(blockedExtensions);
      normalised.set(blockedExtensions, blocked);
    }
    super(
      blocked,
      options.inspectArchives ?? true,
      options.limits ?? DEFAULT_MIME_LIMITS,
      0,
      options.plainText ?? true,
    );
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

function malformed(err: unknown): ScanResult {
  if (err instanceof MimeLimitExceeded) return { kind: 'over-limit', bound: err.bound, limit: err.limit };
  return { kind: 'malformed', detail: err instanceof Error ? err.message : String(err) };
}
