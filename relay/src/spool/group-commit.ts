// A directory fsync makes every rename done in that directory before it started durable,
// so commits that arrive while one is in flight can all share the next one (classic group
// commit): N concurrent commits cost about two fsyncs instead of N, with the same guarantee
// that sync() resolves only after an fsync that began after the call.

export interface GroupCommitterOptions {
  /** false: every sync() does its own fsync (the benchmark's baseline). */
  enabled: boolean;
  fsyncDir: (dir: string) => Promise<void>;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface DirState {
  /** Callers waiting for the next fsync (the one after the fsync in flight, if any). */
  waiting: Waiter[];
}

export class GroupCommitter {
  readonly #enabled: boolean;
  readonly #fsyncDir: (dir: string) => Promise<void>;
  /** Directories with an fsync in flight. */
  readonly #dirs = new Map<string, DirState>();
  #fsyncs = 0;
  #requests = 0;

  constructor(options: GroupCommitterOptions) {
    this.#enabled = options.enabled;
    this.#fsyncDir = options.fsyncDir;
  }

  /** Directory fsyncs actually done. */
  get fsyncs(): number {
    return this.#fsyncs;
  }

  /** sync() calls made. */
  get requests(): number {
    return this.#requests;
  }

  /** Resolves once an fsync of dir that started after this call has completed. */
  sync(dir: string): Promise<void> {
    this.#requests++;
    if (!this.#enabled) {
      this.#fsyncs++;
      return this.#fsyncDir(dir);
    }
    return new Promise<void>((resolve, reject) => {
      const state = this.#dirs.get(dir);
      if (state) {
        state.waiting.push({ resolve, reject });
        return;
      }
      const fresh: DirState = { waiting: [{ resolve, reject }] };
      this.#dirs.set(dir, fresh);
      void this.#flush(dir, fresh);
    });
  }

  async #flush(dir: string, state: DirState): Promise<void> {
    while (state.waiting.length > 0) {
      const batch = state.waiting;
      state.waiting = [];
      this.#fsyncs++;
      try {
        await this.#fsyncDir(dir);
        for (const waiter of batch) waiter.resolve();
      } catch (err: unknown) {
        for (const waiter of batch) waiter.reject(err);
      }
    }
    this.#dirs.delete(dir);
  }
}
