// Takes two file operations per message off the main thread (measured in bench/README.md:
// each costs the main thread ~50–60 µs when handed to libuv's pool on a busy machine):
// making the file a message is written to, and deleting a removed message. A worker
// thread (file-thread.ts) keeps SPARES empty files ready in incoming/ (the main thread
// opens one, without O_CREAT, in microseconds), and a removed message is renamed into
// trash/ (quick, synchronous: the removal's commit point) and deleted there by the
// thread, in batches, or, once delivered, emptied there later to be the next message's
// file. If the thread is not there (it failed, or was never started), callers fall back
// to doing it themselves.

import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { FileReuse, FileThreadData, FromThread, ToThread } from './file-thread.ts';

const SPARES = 32;

/**
 * A delivered message's file is left whole for 2 s (a reader that opened it just before
 * its removal reads a few KB in microseconds), and up to 4,096 files or 64 MiB wait:
 * at 1,000 messages a second of 10 KB, two seconds' worth.
 */
export const FILE_REUSE: FileReuse = { afterMs: 2_000, maxFiles: 4_096, maxBytes: 64 * 1024 * 1024 };

export class FileWorker {
  readonly #worker: Worker;
  readonly #spares: string[] = [];
  #requested = 0;
  readonly #unlinks: string[] = [];
  readonly #reuses: string[] = [];
  #flushScheduled = false;
  #closed = false;
  #onError: (message: string) => void;

  constructor(incomingDir: string, onError: (message: string) => void, reuse: FileReuse = FILE_REUSE) {
    this.#onError = onError;
    this.#worker = new Worker(new URL('./file-thread.ts', import.meta.url), {
      workerData: { incomingDir, prefix: randomBytes(4).toString('hex'), reuse } satisfies FileThreadData,
    });
    this.#worker.on('message', (message: FromThread) => {
      if ('error' in message) {
        this.#onError(message.error);
        return;
      }
      this.#requested -= message.spares.length;
      if (this.#closed) {
        for (const spare of message.spares) unlinkQuietly(spare);
        return;
      }
      this.#spares.push(...message.spares);
    });
    this.#worker.on('error', (err) => {
      this.#closed = true;
      this.#onError(`spool file thread failed: ${err.message}`);
    });
    // after the listeners: adding one would ref the thread again; it must not keep the process up
    this.#worker.unref();
    this.#refill();
  }

  /** The path of an empty file in incoming/ that nobody else uses; undefined when none is ready. */
  take(): string | undefined {
    const spare = this.#spares.shift(); // oldest first: a reused file does not sit under newer ones
    this.#refill();
    return spare;
  }

  /** Deletes a file soon, on the thread (batched with others of this turn). */
  unlink(path: string): void {
    this.#hand(this.#unlinks, path);
  }

  /**
   * Keeps a removed file to be emptied and reused for a new message later (FileReuse),
   * or deletes it. Only for a file nobody will open again and nobody reads from any
   * more: a message whose delivery is over.
   */
  reuse(path: string): void {
    this.#hand(this.#reuses, path);
  }

  /** Stops the thread after the deletions asked for; removes the spares nobody took. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const spare of this.#spares.splice(0)) unlinkQuietly(spare);
    // files kept for reuse are deleted by the thread as it stops
    this.#flush();
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.ref(); // the process waits for the thread's last deletions
    this.#worker.postMessage({ stop: true } satisfies ToThread);
    await exited;
  }

  /** Adds a file to one of this turn's batches for the thread; deletes it here once the thread is gone. */
  #hand(batch: string[], path: string): void {
    if (this.#closed) {
      unlinkQuietly(path);
      return;
    }
    batch.push(path);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#unlinks.length > 0) this.#post({ unlink: this.#unlinks.splice(0) });
    if (this.#reuses.length > 0) this.#post({ reuse: this.#reuses.splice(0) });
  }

  #refill(): void {
    if (this.#closed) return;
    const want = SPARES - this.#spares.length - this.#requested;
    if (want < SPARES / 2) return;
    this.#requested += want;
    this.#post({ spares: want });
  }

  #post(message: ToThread): void {
    this.#worker.postMessage(message);
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already; Spool.init() clears incoming/ and trash/ anyway
  }
}
