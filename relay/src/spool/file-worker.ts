// Takes two file operations per message off the main thread (measured in bench/README.md:
// each costs the main thread ~50–60 µs when handed to libuv's pool on a busy machine):
// creating the file a message is written to, and deleting a removed message. A worker
// thread (file-thread.ts) keeps SPARES empty files created ahead in incoming/ (the main
// thread opens one, without O_CREAT, in microseconds), and a removed message is renamed
// into trash/ (quick, synchronous: the removal's commit point) and deleted there by the
// thread, in batches. If the thread is not there (it failed, or was never started),
// callers fall back to doing it themselves.

import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { FromThread, ToThread } from './file-thread.ts';

const SPARES = 32;

export class FileWorker {
  readonly #worker: Worker;
  readonly #spares: string[] = [];
  #requested = 0;
  #unlinks: string[] = [];
  #flushScheduled = false;
  #closed = false;
  #onError: (message: string) => void;

  constructor(incomingDir: string, onError: (message: string) => void) {
    this.#onError = onError;
    this.#worker = new Worker(new URL('./file-thread.ts', import.meta.url), {
      workerData: { incomingDir, prefix: randomBytes(4).toString('hex') },
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
    const spare = this.#spares.pop();
    this.#refill();
    return spare;
  }

  /** Deletes a file soon, on the thread (batched with others of this turn). */
  unlink(path: string): void {
    if (this.#closed) {
      unlinkQuietly(path);
      return;
    }
    this.#unlinks.push(path);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const batch = this.#unlinks;
      this.#unlinks = [];
      this.#post({ unlink: batch });
    });
  }

  /** Stops the thread after the deletions asked for; removes the spares nobody took. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const spare of this.#spares.splice(0)) unlinkQuietly(spare);
    if (this.#unlinks.length > 0) this.#post({ unlink: this.#unlinks.splice(0) });
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.ref(); // the process waits for the thread's last deletions
    this.#worker.postMessage({ stop: true } satisfies ToThread);
    await exited;
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
