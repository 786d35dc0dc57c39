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

interface MimeNode {
  parentNode: unknown;
  multipart: unknown;
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
  processLine(line: Buffer | false, final: boolean, next: LineCallback): void;
  checkBoundary(line: Buffer): number | false;
}

const mailsplit = createRequire(import.meta.url)('mailsplit') as {
  Splitter: new (options?: Record<string, unknown>) => SplitterInternals;
};

const LF = 0x0a;
const CR = 0x0d;
/** mailsplit's parser state while in a part's body. */
const BODY = 0x02;
const NONE: Part = { type: 'none', node: { parentNode: null, multipart: false } };
const DASH = 0x2d;

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

export class FastSplitter extends mailsplit.Splitter {
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
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
      this.line = this.line ? Buffer.concat([this.line, chunk.subarray(pos)]) : chunk.subarray(pos);
    }
    callback();
  }
}
