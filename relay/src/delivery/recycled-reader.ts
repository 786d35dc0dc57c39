// A large spooled message is delivered in chunks read into buffers that are used again
// once the socket has sent them, instead of a new buffer per read. A new buffer per read
// is garbage outside V8's heap, which V8 collects only when enough of it has piled up:
// ten 30 MB messages delivered at once left tens of megabytes of it resident.
//
// The rule that keeps this safe: a chunk's buffer is given back (recycle) only by the code
// that held the chunk last, once nothing refers to its bytes any more: DotStuffer, after
// the socket's write callback for the chunk, or at once when it sent a copy instead. A
// buffer given back twice, or one that never came from here, is ignored.
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

/** Free buffers kept for the next reads, at most this many (8 MiB of 256 KiB buffers). */
const POOL_MAX = 32;

interface Lent {
  reader: RecycledFileReader;
  buffer: Buffer;
  /** The chunk given out: only this very object gives the buffer back. */
  chunk: Buffer;
}

/** Free buffers by size. */
const pool = new Map<number, Buffer[]>();
/** Buffers out on a read or in flight, by their memory (a chunk is a view of it). */
const lent = new WeakMap<ArrayBufferLike, Lent>();
let pooled = 0;

function take(bytes: number): Buffer {
  const free = pool.get(bytes);
  const buffer = free?.pop();
  if (buffer) {
    pooled--;
    return buffer;
  }
  // allocUnsafeSlow: memory of its own, never a slice of Node's shared pool
  return Buffer.allocUnsafeSlow(bytes);
}

function giveBack(buffer: Buffer): void {
  if (pooled >= POOL_MAX) return;
  const free = pool.get(buffer.length) ?? [];
  free.push(buffer);
  pool.set(buffer.length, free);
  pooled++;
}

/**
 * Gives a chunk's buffer back, if the chunk came from a RecycledFileReader; otherwise
 * nothing. A chunk given back before, whose buffer may already hold a newer chunk, is a
 * different object from that newer chunk, so it cannot give the buffer back again.
 */
export function recycle(chunk: Buffer): void {
  const loan = lent.get(chunk.buffer);
  if (!loan || loan.chunk !== chunk) return;
  lent.delete(chunk.buffer);
  giveBack(loan.buffer);
  loan.reader.returned();
}

/**
 * The first `size` bytes of an open file, in chunks of up to `chunkBytes`, with at most
 * `buffers` chunks out at once: a read waits until the consumer recycles one. Its consumer
 * must take the chunks as they come (flowing or piped: a paused read() may join chunks
 * into a copy) and recycle every one (DotStuffer with a socket does), or the reader stalls.
 */
export class RecycledFileReader extends Readable {
  readonly #handle: FileHandle;
  readonly #size: number;
  readonly #chunkBytes: number;
  readonly #buffers: number;
  #position = 0;
  #out = 0;
  #reading = false;
  /** A read waits for a buffer to come back. */
  #waiting = false;

  constructor(handle: FileHandle, size: number, options: { chunkBytes: number; buffers: number }) {
    super();
    this.#handle = handle;
    this.#size = size;
    this.#chunkBytes = options.chunkBytes;
    this.#buffers = options.buffers;
  }

  /** One of this reader's chunks was recycled. */
  returned(): void {
    this.#out--;
    if (this.#waiting && !this.destroyed) {
      this.#waiting = false;
      this._read();
    }
  }

  override _read(): void {
    if (this.#reading) return;
    if (this.#position >= this.#size) {
      this.push(null);
      return;
    }
    if (this.#out >= this.#buffers) {
      this.#waiting = true;
      return;
    }
    this.#reading = true;
    const buffer = take(this.#chunkBytes);
    this.#out++;
    const loan: Lent = { reader: this, buffer, chunk: buffer };
    lent.set(buffer.buffer, loan);
    const length = Math.min(buffer.length, this.#size - this.#position);
    this.#handle.read(buffer, 0, length, this.#position).then(
      ({ bytesRead }) => {
        this.#reading = false;
        if (this.destroyed || bytesRead === 0) {
          recycle(buffer);
          if (!this.destroyed) {
            this.destroy(new Error(`spool file ended at ${this.#position} of ${this.#size} bytes`));
          }
          return;
        }
        this.#position += bytesRead;
        loan.chunk = buffer.subarray(0, bytesRead);
        this.push(loan.chunk);
      },
      (err: unknown) => {
        this.#reading = false;
        recycle(buffer);
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }
}
