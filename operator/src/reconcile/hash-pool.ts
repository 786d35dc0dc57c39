// Password hashing off the reconcile path. scrypt costs ~100 ms of a core per password,
// so 100,000 plain passwords are minutes of work: a reconcile asks for the hashes it
// lacks and goes on with the users whose hash is ready; the pool hashes with bounded
// concurrency, taking requests round-robin across policies (a policy with 100,000 new
// users does not hold back another's single change), and tells the policy when a batch
// is ready so that it is reconciled again.
import { hashPassword } from '@sluice/relay/password';

export interface HashPoolOptions {
  /** Hashes computed at once; default 2. */
  concurrency?: number;
  /** Called (at most once per finished batch) when hashes of a policy are ready. */
  onReady: (policyKey: string) => void;
  /** Counts each hash computed, for metrics and tests. */
  onHashed?: () => void;
  hash?: (password: string) => Promise<string>;
}

interface Request {
  username: string;
  fingerprint: string;
  password: string;
}

export class HashPool {
  readonly #o: HashPoolOptions;
  readonly #concurrency: number;
  readonly #hash: (password: string) => Promise<string>;
  /** policy → username → waiting request (the newest fingerprint wins); policies in turn order */
  readonly #waiting = new Map<string, Map<string, Request>>();
  /** policy → username → fingerprint → hash, until the reconcile takes it */
  readonly #done = new Map<string, Map<string, { fingerprint: string; hash: string }>>();
  readonly #running = new Map<string, Request>();
  #active = 0;
  #hashed = 0;

  constructor(options: HashPoolOptions) {
    this.#o = options;
    this.#concurrency = Math.max(1, options.concurrency ?? 2);
    this.#hash = options.hash ?? ((p) => hashPassword(p));
  }

  /** Hashes computed so far. */
  get hashed(): number {
    return this.#hashed;
  }

  /** Requests waiting or running for a policy. */
  pending(policyKey: string): number {
    let n = this.#waiting.get(policyKey)?.size ?? 0;
    for (const key of this.#running.keys()) if (key.startsWith(`${policyKey}\0`)) n++;
    return n;
  }

  /** The hash for this fingerprint once computed (handed over once); asks for it otherwise. */
  hashFor(policyKey: string, username: string, fingerprint: string, password: string): string | undefined {
    const done = this.#done.get(policyKey);
    const ready = done?.get(username);
    if (ready?.fingerprint === fingerprint) {
      done?.delete(username);
      if (done?.size === 0) this.#done.delete(policyKey);
      return ready.hash;
    }
    const running = this.#running.get(`${policyKey}\0${username}`);
    if (running?.fingerprint === fingerprint) return undefined;
    let queue = this.#waiting.get(policyKey);
    if (!queue) {
      // a policy with nothing waiting goes first: one password change is not stuck behind a bulk
      queue = new Map();
      const others = [...this.#waiting];
      this.#waiting.clear();
      this.#waiting.set(policyKey, queue);
      for (const [k, v] of others) this.#waiting.set(k, v);
    }
    queue.set(username, { username, fingerprint, password });
    this.#pump();
    return undefined;
  }

  /** Drops what a policy waits for and what was computed for it (the policy is gone). */
  forget(policyKey: string): void {
    this.#waiting.delete(policyKey);
    this.#done.delete(policyKey);
  }

  /** The first request of the policy whose turn it is; that policy then goes to the back of the line. */
  #next(): { policyKey: string; request: Request } | undefined {
    const first = this.#waiting.entries().next();
    if (first.done) return undefined;
    const [policyKey, queue] = first.value;
    const [username, request] = queue.entries().next().value as [string, Request];
    queue.delete(username);
    this.#waiting.delete(policyKey);
    if (queue.size > 0) this.#waiting.set(policyKey, queue);
    return { policyKey, request };
  }

  #pump(): void {
    while (this.#active < this.#concurrency) {
      const next = this.#next();
      if (!next) return;
      this.#active++;
      const { policyKey, request } = next;
      const slot = `${policyKey}\0${request.username}`;
      this.#running.set(slot, request);
      this.#hash(request.password)
        .then(
          (hash) => {
            this.#hashed++;
            this.#o.onHashed?.();
            let done = this.#done.get(policyKey);
            if (!done) {
              done = new Map();
              this.#done.set(policyKey, done);
            }
            done.set(request.username, { fingerprint: request.fingerprint, hash });
          },
          () => {
            // hashPassword fails only on an internal error; the next reconcile asks again
          },
        )
        .finally(() => {
          this.#running.delete(slot);
          this.#active--;
          // one notice per batch: when nothing of this policy waits or runs any more, or
          // every `concurrency * 8` hashes during a long batch so that ready users are written
          if (this.pending(policyKey) === 0 || this.#hashed % (this.#concurrency * 8) === 0) {
            this.#o.onReady(policyKey);
          }
          this.#pump();
        });
    }
  }
}
