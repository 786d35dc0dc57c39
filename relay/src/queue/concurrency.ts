// Outgoing connection limits: at most `total` slots in use, and at most `perKey` for any one
// key (destination domain). Limits are read on every decision so a config reload applies to
// the next slot handed out. Waiters are served oldest first among keys that have room, so
// one saturated domain does not hold up mail to the others.

export interface Limits {
  total: number;
  perKey: number;
}

/** Gives the slot back; calling it twice is harmless. */
export type Release = () => void;

interface Waiter {
  seq: number;
  grant: (release: Release | undefined) => void;
}

export class KeyedSemaphore {
  readonly #limits: () => Limits;
  readonly #inUse = new Map<string, number>();
  /** Waiters per key, each queue oldest first; keys without waiters are absent. */
  readonly #waiting = new Map<string, Waiter[]>();
  #total = 0;
  #seq = 0;
  #closed = false;

  constructor(limits: () => Limits) {
    this.#limits = limits;
  }

  /** Slots in use overall. */
  get inUse(): number {
    return this.#total;
  }

  /** Resolves with a release once a slot for key is free, or with undefined once closed. */
  acquire(key: string): Promise<Release | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    if (!this.#waiting.has(key) && this.#hasRoom(key)) return Promise.resolve(this.#take(key));
    return new Promise((grant) => {
      const queue = this.#waiting.get(key) ?? [];
      queue.push({ seq: this.#seq++, grant });
      this.#waiting.set(key, queue);
    });
  }

  /** Answers every waiter with undefined and every later acquire too (shutdown). */
  close(): void {
    this.#closed = true;
    for (const queue of this.#waiting.values()) for (const waiter of queue) waiter.grant(undefined);
    this.#waiting.clear();
  }

  #hasRoom(key: string): boolean {
    const limits = this.#limits();
    return this.#total < limits.total && (this.#inUse.get(key) ?? 0) < limits.perKey;
  }

  #take(key: string): Release {
    this.#total++;
    this.#inUse.set(key, (this.#inUse.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#inUse.get(key) ?? 1) - 1;
      if (left === 0) this.#inUse.delete(key);
      else this.#inUse.set(key, left);
      this.#dispatch();
    };
  }

  #dispatch(): void {
    for (;;) {
      let best: { key: string; queue: Waiter[] } | undefined;
      for (const [key, queue] of this.#waiting) {
        const head = queue[0];
        if (!head || !this.#hasRoom(key)) continue;
        if (!best || head.seq < best.queue[0]!.seq) best = { key, queue };
      }
      if (!best) return;
      const waiter = best.queue.shift()!;
      if (best.queue.length === 0) this.#waiting.delete(best.key);
      waiter.grant(this.#take(best.key));
    }
  }
}
