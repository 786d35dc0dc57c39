// mailsplit's MessageSplitter with a faster way through each chunk. mailsplit finds line
// ends by testing every byte in JavaScript and goes back to the event loop (setImmediate)
// after every line, although the line handler (processLine) always answers at once: on
// 1 MB messages that was a fifth of the relay's main thread. This is its _transform with
// the line ends found by Buffer.indexOf, the lines of a chunk handled in one loop, and
// the plain lines inside a body group (no boundary) added to the group without a call.
// What it emits, in which groups and order, is mailsplit's: the bookkeeping below is its
// code, and a test compares both splitters' output on random MIME split at random points.
import { createRequire } from 'node:module';
import type { Transform, TransformCallback } from 'node:stream';
import { DEFAULT_MIME_LIMITS } from '../config/schema.ts';
import { parseHeaderBlock } from './header-block.ts';

interface MimeNode {
  parentNode: MimeNode | false | null;
  multipart: unknown;
  _headerlen: number;
}
interface Part {
  type: string;
  node: MimeNode;
  value?: Buffer;
}
type LineCallback = (err?: Error | null, data?: Part | false, flush?: boolean) => void;

/** The parts of mailsplit's MessageSplitter (untyped CommonJS) this file uses. */
interface SplitterInternals extends Transform {
  line: Buffer | false;
  hasFailed: boolean;
  state: number;
  node: MimeNode;
  nodeCounter: number;
  maxChildNodes: number;
  config: Record<string, unknown>;
  processLine(line: Buffer | false, final: boolean, next: LineCallback): void;
  checkBoundary(line: Buffer): number | false;
  newNode(parent?: MimeNode | false): void;
}

const require = createRequire(import.meta.url);
const mailsplit = require('mailsplit') as {
  Splitter: new (options?: Record<string, unknown>) => SplitterInternals;
  Headers: new (headers: unknown, config?: unknown) => HeadersInternals;
};
/** mailsplit's part node (untyped CommonJS; not exported from its index, so by its path). */
const MimeNodeBase = require('mailsplit/lib/mime-node.js') as new (
  parent: unknown,
  config: unknown,
) => MimeNode;

/** The parts of mailsplit's Headers this file fills in. */
interface HeadersInternals {
  headers: Buffer | string | false;
  parsed: boolean;
  lines: HeaderLine[] | false;
  mbox: string | false;
  http: string | false;
}
interface HeaderLine {
  key: string;
  line: string;
}

const LF = 0x0a;
const CR = 0x0d;
/** mailsplit's parser states: in a part's header, in its body. */
const HEAD = 0x01;
const BODY = 0x02;
const NONE: Part = { type: 'none', node: { parentNode: null, multipart: false, _headerlen: 0 } };
const DASH = 0x2d;
const SP = 0x20;
const TAB = 0x09;
const SEMICOLON = 0x3b;
const EMPTY = Buffer.alloc(0);
/** The header fields whose parameters mailsplit and the file name check parse. */
const PARAMETER_FIELD = /^content-(?:type|disposition)[ \t]*:/i;

/** How many times `byte` occurs in `bytes` (found by native search). */
export function count(bytes: Buffer, byte: number): number {
  let n = 0;
  for (let at = bytes.indexOf(byte); at !== -1; at = bytes.indexOf(byte, at + 1)) n++;
  return n;
}

/**
 * Where the lines of one chunk that mailsplit's checkBoundary looks at more closely start.
 * It looks only at lines starting with "--", or with CR and then "--" from the second or
 * third byte, so every such line has a "-" within its first three bytes. Found by searching
 * for "-" (memchr in native code; base64, most of a large message, has none), every other
 * line is plain body text.
 */
class BoundaryCandidates {
  readonly #chunk: Buffer;
  /** The next candidate line's start at or after the last `from`; -1: none; -2: not yet looked. */
  #next = -2;
  constructor(chunk: Buffer) {
    this.#chunk = chunk;
  }

  /**
   * `from` starts a line (the byte before it is LF). Returns the end of the last whole
   * line before the next candidate at or after `from` (`from` itself if it is one).
   */
  plainRunEnd(from: number): number {
    const chunk = this.#chunk;
    if (this.#next !== -1 && this.#next < from) this.#next = this.#candidate(from);
    if (this.#next !== -1) return this.#next;
    // no candidate in the rest of the chunk: up to its last line end
    const last = chunk.lastIndexOf(LF);
    return last >= from ? last + 1 : from;
  }

  /** The start of the first line at or after `from` with a "-" where checkBoundary looks. */
  #candidate(from: number): number {
    const chunk = this.#chunk;
    for (let dash = chunk.indexOf(DASH, from); dash !== -1; dash = chunk.indexOf(DASH, dash + 1)) {
      if (chunk[dash - 1] === LF) return dash;
      // a line starting with CR: "-" as its second or third byte
      if (dash - 1 >= from && chunk[dash - 1] === CR && chunk[dash - 2] === LF) return dash - 1;
      if (dash - 2 >= from && chunk[dash - 2] === CR && chunk[dash - 3] === LF) return dash - 2;
    }
    return -1;
  }
}

const headersOf = new WeakMap<object, unknown>();

/**
 * mailsplit's part node, with its header block parsed by parseHeaderBlock. Its
 * parseHeaders assigns a Headers over the raw block and reads from it at once, which
 * would parse the block itself (quadratic in folded lines): the fields are filled in
 * as the Headers is handed over, so mailsplit finds them parsed.
 */
class LinearHeaderNode extends MimeNodeBase {
  get headers(): unknown {
    return headersOf.get(this) ?? false;
  }
  set headers(value: unknown) {
    if (value instanceof mailsplit.Headers && !value.parsed && value.headers !== false) {
      const raw = value.headers;
      const block = parseHeaderBlock(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw);
      value.lines = block.fields;
      value.mbox = block.mbox;
      value.http = block.http;
      value.parsed = true;
    }
    headersOf.set(this, value);
  }
}

/** Bounds on a message's MIME structure; each keeps the work a message costs in proportion to its size. */
export interface MimeLimits {
  /** Header bytes of one part (its header block, folded lines included). */
  maxHeaderBytes: number;
  /** Header lines of one part (folded lines counted one by one, so also its fields). */
  maxHeaderLines: number;
  /** Parts (MIME nodes, the message itself included). */
  maxMimeParts: number;
  /** Levels of multipart nesting. */
  maxMimeDepth: number;
  /** Parameters (";") in the Content-Type and Content-Disposition fields of one part. */
  maxMimeParameters: number;
}

export type MimeBound = keyof MimeLimits;

/** A message over one of the MimeLimits; the splitter fails with it. */
export class MimeLimitExceeded extends Error {
  readonly bound: MimeBound;
  readonly limit: number;
  constructor(bound: MimeBound, limit: number) {
    super(`${bound} over ${limit}`);
    this.name = 'MimeLimitExceeded';
    this.bound = bound;
    this.limit = limit;
  }
}

export class FastSplitter extends mailsplit.Splitter {
  readonly #limits: MimeLimits;
  /** Nesting level of each part node (the message is 0). */
  readonly #depth = new WeakMap<object, number>();
  /** The node whose header lines #headerLines counts. */
  #counted: MimeNode | null = null;
  #headerLines = 0;
  /** Whether the header field being read is a Content-Type or Content-Disposition. */
  #parameterField = false;
  #parameters = 0;
  /**
   * The pieces of an unfinished line after this.line, joined only once its end comes:
   * mailsplit joins them on every chunk, quadratic in a long line sent in small chunks.
   */
  #lineRest: Buffer[] = [];

  constructor(options: { ignoreEmbedded?: boolean; limits?: MimeLimits } = {}) {
    const limits = options.limits ?? DEFAULT_MIME_LIMITS;
    // mailsplit's own bounds, as a backstop: the checks in processLine come first (its
    // header size also counts the empty line that ends the header)
    super({
      ignoreEmbedded: options.ignoreEmbedded,
      maxHeadSize: limits.maxHeaderBytes + 2,
      maxChildNodes: limits.maxMimeParts,
    });
    this.#limits = limits;
  }

  /** mailsplit's newNode, with a node that parses its header block in one pass. */
  override newNode(parent?: MimeNode | false): void {
    this.node = new LinearHeaderNode(parent || false, this.config);
    this.state = HEAD;
    this.nodeCounter++;
  }

  /** Every line but the plain body lines (see _transform) comes here: the bounds are checked first. */
  override processLine(line: Buffer | false, final: boolean, next: LineCallback): void {
    const over = this.#overLimit(line);
    if (over !== null) {
      next(over);
      return;
    }
    super.processLine(line, final, next);
  }

  /** Constant work per line: a few counters, and one map look-up per new node. */
  #overLimit(line: Buffer | false): MimeLimitExceeded | null {
    const limits = this.#limits;
    const node = this.node;
    if (this.nodeCounter > limits.maxMimeParts)
      return new MimeLimitExceeded('maxMimeParts', limits.maxMimeParts);
    if (node !== this.#counted) {
      this.#counted = node;
      this.#headerLines = 0;
      this.#parameters = 0;
      const parent = node.parentNode;
      const depth = parent ? (this.#depth.get(parent) ?? 0) + 1 : 0;
      this.#depth.set(node, depth);
      if (depth > limits.maxMimeDepth) return new MimeLimitExceeded('maxMimeDepth', limits.maxMimeDepth);
    }
    if (this.state === HEAD && line) {
      const pending = this.line ? this.line.length : 0;
      const length = pending + line.length;
      // the empty line that ends the header is not counted
      if (length <= 2 && (this.line ? this.line[0] : line[0]) === (length === 1 ? LF : CR)) return null;
      this.#headerLines++;
      if (this.#headerLines > limits.maxHeaderLines) {
        return new MimeLimitExceeded('maxHeaderLines', limits.maxHeaderLines);
      }
      if (node._headerlen + length > limits.maxHeaderBytes) {
        return new MimeLimitExceeded('maxHeaderBytes', limits.maxHeaderBytes);
      }
      // Parameters are what costs most to parse (~15 µs each, and each is parsed more
      // than once), so they are counted, in the fields whose parameters are parsed.
      const start = this.line ? Buffer.concat([this.line.subarray(0, 32), line.subarray(0, 32)]) : line;
      if (start[0] !== SP && start[0] !== TAB) {
        this.#parameterField = PARAMETER_FIELD.test(start.toString('latin1', 0, 32));
      }
      if (this.#parameterField) {
        this.#parameters += count(this.line || EMPTY, SEMICOLON) + count(line, SEMICOLON);
        if (this.#parameters > limits.maxMimeParameters) {
          return new MimeLimitExceeded('maxMimeParameters', limits.maxMimeParameters);
        }
      }
    }
    return null;
  }

  #joinLine(): void {
    if (this.#lineRest.length === 0) return;
    this.line = Buffer.concat([this.line || EMPTY, ...this.#lineRest]);
    this.#lineRest = [];
  }

  override _flush(callback: TransformCallback): void {
    this.#joinLine();
    super._flush(callback);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.line && chunk.indexOf(LF) === -1) {
      // still no line end: a chunk without one only adds to the unfinished line
      this.#lineRest.push(chunk);
      callback();
      return;
    }
    this.#joinLine();
    let pos = 0;
    let i = 0;
    let group: Part = NONE;
    let groupstart = this.line ? -this.line.length : 0;
    let groupend = 0;
    let candidates: BoundaryCandidates | undefined;

    const checkTrailingLinebreak = (data: Part): void => {
      const value = data.value;
      if (data.type !== 'body' || !data.node.parentNode || !value || value.length === 0) return;
      if (value[value.length - 1] === LF) {
        groupstart--;
        groupend--;
        pos--;
        if (value.length > 1 && value[value.length - 2] === CR) {
          groupstart--;
          groupend--;
          pos--;
          if (groupstart < 0 && !this.line) {
            // store only <CR> as <LF> should be on the positive side
            this.line = Buffer.from([CR]);
          }
          data.value = value.subarray(0, value.length - 2);
        } else {
          data.value = value.subarray(0, value.length - 1);
        }
      } else if (value[value.length - 1] === CR) {
        groupstart--;
        groupend--;
        pos--;
        data.value = value.subarray(0, value.length - 1);
      }
    };

    // do not include the last line ending of a body group
    const trimBodyEnd = (): void => {
      if (group.type === 'body' && groupend >= groupstart && group.node.parentNode) {
        if (chunk[groupend - 1] === LF) {
          groupend--;
          if (groupend >= groupstart && chunk[groupend - 1] === CR) groupend--;
        }
      }
    };

    for (let lf = chunk.indexOf(LF, i); lf !== -1; lf = chunk.indexOf(LF, i)) {
      const start = Math.max(pos, 0);
      i = lf + 1;
      pos = i;
      // Another line of the body group being gathered, which is no boundary: processLine
      // would answer with a part of the group's type and node, which only moves the
      // group's end. Most lines of a message are these (an attachment's base64).
      if (
        this.state === BODY &&
        !this.line &&
        group.node === this.node &&
        group.type === (this.node.multipart ? 'data' : 'body') &&
        this.nodeCounter <= this.maxChildNodes &&
        !this.checkBoundary(chunk.subarray(start, i))
      ) {
        // So are all the lines after it up to the next one that checkBoundary could take
        // for a boundary (one that starts with "--", or with CR, which it skips): jump there.
        candidates ??= new BoundaryCandidates(chunk);
        const run = candidates.plainRunEnd(i);
        groupend = i = pos = run;
        continue;
      }
      let answered = false;
      let failure: Error | null | undefined;
      let data: Part | false | undefined;
      let flush: boolean | undefined;
      this.processLine(chunk.subarray(start, i), false, (err, d, f) => {
        answered = true;
        failure = err;
        data = d;
        flush = f;
      });
      if (!answered) failure = new Error('mailsplit answered a line later than expected');
      if (failure) {
        this.hasFailed = true;
        const err = failure;
        setImmediate(() => callback(err));
        return;
      }
      if (!data) continue;
      const part: Part = data;

      if (flush) {
        if (group.type !== 'none') {
          trimBodyEnd();
          if (groupstart !== groupend) {
            group.value = chunk.subarray(groupstart, groupend);
            if (groupend < i) part.value = chunk.subarray(groupend, i);
          }
          this.push(group);
          group = NONE;
          groupstart = groupend = i;
        }
        this.push(part);
        groupend = i;
        continue;
      }

      if (part.type === group.type) {
        // shift slice end position forward
        groupend = i;
        continue;
      }
      trimBodyEnd();
      if (group.type !== 'none' && group.type !== 'node') {
        // a previous data/body chunk to output
        if (groupstart !== groupend) {
          group.value = chunk.subarray(groupstart, groupend);
          if (group.value.length) {
            this.push(group);
            group = NONE;
          }
        }
      }
      if (part.type === 'node') {
        this.push(part);
        groupstart = i;
        groupend = i;
      } else if (groupstart < 0) {
        groupstart = i;
        groupend = i;
        checkTrailingLinebreak(part);
        if (part.value?.length) this.push(part);
      } else {
        // start a new body/data chunk
        group = part;
        groupstart = groupend;
        groupend = i;
      }
    }

    // skip the last line break of a body
    if (pos >= groupstart + 1 && group.type === 'body' && group.node.parentNode) {
      if (chunk[pos - 1] === LF) {
        pos--;
        if (pos >= groupstart && chunk[pos - 1] === CR) pos--;
      }
    }
    if (group.type !== 'none' && group.type !== 'node' && pos > groupstart) {
      // a leftover data/body chunk to push out
      group.value = chunk.subarray(groupstart, pos);
      if (group.value.length) this.push(group);
    }
    if (pos < chunk.length) {
      if (this.line) this.#lineRest.push(chunk.subarray(pos));
      else this.line = chunk.subarray(pos);
    }
    callback();
  }
}
