// Outgoing connections kept between jobs, per destination: at most maxPerKey open at once
// (busy, idle or being opened), each used for at most maxUses transactions, and an idle one
// closed after idleTimeoutMs. The pool knows nothing of SMTP; it holds whatever it is given.

export interface Poolable {
  /** False once the connection failed or the peer closed it. */
  readonly usable: boolean;
  /** Ends the connection (politely if it can); must not throw. */
  close(): void;
}

/** An idle connection to reuse, or 'open' (room reserved for a new one), or 'closed'. */
export type Lease<C> = C | 'open' | 'closed';

export interface ConnectionPoolOptions {
  maxPerKey: number;
  maxUses: number;
  idleTimeoutMs: number;
}

interface Idle<C> {
  connection: C;
  timer: NodeJS.Timeout;
}

interface KeyState<C> {
  /** Connections counted against the limit: busy, idle, and reserved for opening. */
  open: number;
  idle: Array<Idle<C>>;
  waiters: Array<() => void>;
}

export class ConnectionPool<C extends Poolable> {
  readonly #options: ConnectionPoolOptions;
  readonly #keys = new Map<string, KeyState<C>>();
  readonly #uses = new WeakMap<C, number>();
  #closed = false;

  constructor(options: ConnectionPoolOptions) {
    for (const [name, value] of Object.entries(options)) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
    }
    this.#options = options;
  }

  /**
   * Takes the most recently used idle connection of `key` that `fits`, or reserves room for a
   * new one. Waits while the key is at its limit. Idle connections that do not fit are closed.
   */
  async acquire(key: string, fits: (connection: C) => boolean = () => true): Promise<Lease<C>> {
    for (;;) {
      if (this.#closed) return 'closed';
      const state = this.#state(key);
      for (let idle = state.idle.pop(); idle !== undefined; idle = state.idle.pop()) {
        clearTimeout(idle.timer);
        if (idle.connection.usable && fits(idle.connection)) return idle.connection;
        idle.connection.close();
        state.open--;
      }
      if (state.open < this.#options.maxPerKey) {
        state.open++;
        return 'open';
      }
      await new Promise<void>((resolve) => state.waiters.push(resolve));
    }
  }

  /** Hands back a connection after a transaction; it is kept for the next job if it can be. */
  release(key: string, connection: C, reusable: boolean): void {
    const uses = (this.#uses.get(connection) ?? 0) + 1;
    this.#uses.set(connection, uses);
    if (this.#closed || !reusable || !connection.usable || uses >= this.#options.maxUses) {
      this.discard(key, connection);
      return;
    }
    const state = this.#state(key);
    const timer = setTimeout(() => {
      const index = state.idle.findIndex((i) => i.connection === connection);
      if (index === -1) return;
      state.idle.splice(index, 1);
      this.discard(key, connection);
    }, this.#options.idleTimeoutMs);
    timer.unref();
    state.idle.push({ connection, timer });
    this.#wake(key, state);
  }

  /** Gives up a connection (closing it) or a reservation that never became one. */
  discard(key: string, connection?: C): void {
    connection?.close();
    const state = this.#state(key);
    state.open = Math.max(0, state.open - 1);
    this.#wake(key, state);
  }

  /** Connections of `key` counted against its limit (for tests and metrics). */
  size(key: string): number {
    return this.#keys.get(key)?.open ?? 0;
  }

  /** Closes idle connections now and busy ones as they come back; acquire answers 'closed'. */
  close(): void {
    this.#closed = true;
    for (const state of this.#keys.values()) {
      for (const idle of state.idle.splice(0)) {
        clearTimeout(idle.timer);
        idle.connection.close();
        state.open--;
      }
      for (const wake of state.waiters.splice(0)) wake();
    }
  }

  #state(key: string): KeyState<C> {
    let state = this.#keys.get(key);
    if (state === undefined) {
      state = { open: 0, idle: [], waiters: [] };
      this.#keys.set(key, state);
    }
    return state;
  }

  #wake(key: string, state: KeyState<C>): void {
    const wake = state.waiters.shift();
    if (wake !== undefined) {
      wake();
    } else if (state.open === 0 && state.idle.length === 0) {
      this.#keys.delete(key);
    }
  }
}
