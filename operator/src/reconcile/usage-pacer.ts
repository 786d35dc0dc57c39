// The write budget of SmtpUser usage. Usage changes for every active user on every pass
// (each 5 minutes): written inside the reconcile, 100,000 users would be 333 status
// writes a second. Instead a usage-only change is handed to this pacer, which writes at
// most `perSecond` status patches a second, spread evenly, oldest first; a newer usage
// of a user still waiting replaces the older one in place (so the backlog never
// exceeds one entry per user, and every user gets its turn). The patch holds only
// status.usage, so it never overwrites conditions written meanwhile.
// Condition changes (Ready, AbuseSuspected) are not paced: they are written at once.

export const DEFAULT_USAGE_WRITES_PER_SECOND = 20;

export interface UsagePacerOptions<E> {
  /** Usage status writes a second, across all policies */
  perSecond?: number;
  write: (uid: string, entry: E) => Promise<void>;
  log?: { warn(details: object, message: string): void };
}

export class UsagePacer<E> {
  readonly #intervalMs: number;
  readonly #write: (uid: string, entry: E) => Promise<void>;
  readonly #log: UsagePacerOptions<E>['log'];
  readonly #waiting = new Map<string, E>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #written = 0;

  constructor(options: UsagePacerOptions<E>) {
    this.#intervalMs = 1000 / Math.max(0.001, options.perSecond ?? DEFAULT_USAGE_WRITES_PER_SECOND);
    this.#write = options.write;
    this.#log = options.log;
  }

  /** Usage writes done so far. */
  get written(): number {
    return this.#written;
  }

  /** Entries waiting for their turn. */
  get backlog(): number {
    return this.#waiting.size;
  }

  offer(uid: string, entry: E): void {
    if (this.#stopped) return;
    this.#waiting.set(uid, entry);
    this.#schedule();
  }

  /** Drops what waits for a deleted user. */
  forget(uid: string): void {
    this.#waiting.delete(uid);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#waiting.clear();
  }

  #schedule(): void {
    if (this.#timer || this.#stopped || this.#waiting.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushOne().finally(() => this.#schedule());
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async #flushOne(): Promise<void> {
    const first = this.#waiting.entries().next();
    if (first.done) return;
    const [uid, entry] = first.value;
    this.#waiting.delete(uid);
    try {
      await this.#write(uid, entry);
      this.#written++;
    } catch (err: unknown) {
      // the next pass offers this user's usage again
      this.#log?.warn({ uid, err: String(err) }, 'could not write the SmtpUser usage');
    }
  }
}
