// Password verification is memory-hard on purpose, so a client that authenticates on every
// connection would otherwise pay ~100 ms of a libuv thread each time and cap AUTH throughput.
// Successful verifications are remembered for a short while, keyed by an HMAC that covers
// the stored hash, so a password change (a new hash) invalidates them without a purge.
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { verifyPassword } from './password.ts';

export type VerifyFn = (plain: string, stored: string) => Promise<boolean>;

export type VerifyCacheOptions = {
  /** How long a successful verification is remembered; 0 turns caching off (coalescing stays). */
  ttlMs: number;
  /** Most remembered verifications; the least recently used go first. */
  maxEntries?: number;
  /** Milliseconds on a monotonic clock; tests inject their own. */
  now?: () => number;
  /** The slow path; verifyPassword unless told otherwise. */
  verify?: VerifyFn;
};

export type VerifyCacheStats = {
  /** Answered from the cache. */
  hits: number;
  /** Joined a verification of the same key already in flight. */
  coalesced: number;
  /** Ran the slow path. */
  verifications: number;
};

export const DEFAULT_MAX_ENTRIES = 10_000;

export class VerifyCache {
  // Per process, so keys mean nothing outside it and are useless to anyone reading a heap dump.
  readonly #secret = randomBytes(32);
  // Value: when the entry expires on the injected clock. The TTL is checked here rather than
  // by lru-cache, whose TTL treats a start time of 0 as "no TTL" and keeps an entry at exactly
  // ttl ms, both surprising with an injected clock.
  readonly #entries: LRUCache<string, number> | undefined;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #inFlight = new Map<string, Promise<boolean>>();
  readonly #verify: VerifyFn;
  #hits = 0;
  #coalesced = 0;
  #verifications = 0;

  constructor(options: VerifyCacheOptions) {
    const {
      ttlMs,
      maxEntries = DEFAULT_MAX_ENTRIES,
      now = () => performance.now(),
      verify = verifyPassword,
    } = options;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 0) throw new RangeError('ttlMs must be a whole number >= 0');
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be >= 1');
    this.#verify = verify;
    this.#ttlMs = ttlMs;
    this.#now = now;
    this.#entries = ttlMs === 0 ? undefined : new LRUCache<string, number>({ max: maxEntries });
  }

  /** Verifies `password` against `storedHash` for `username`, remembering only a success. */
  verify(username: string, storedHash: string, password: string): Promise<boolean> {
    const key = this.#key(username, storedHash, password);
    if (this.#isFresh(key)) {
      this.#hits++;
      return Promise.resolve(true);
    }
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) {
      this.#coalesced++;
      return pending;
    }
    this.#verifications++;
    const run = Promise.resolve()
      .then(() => this.#verify(password, storedHash))
      .then((ok) => {
        // A failure is never remembered: a wrong guess must cost the guesser every time.
        if (ok) this.#entries?.set(key, this.#now() + this.#ttlMs);
        return ok;
      })
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, run);
    return run;
  }

  /** Remembered successes (expired ones may linger until looked up or evicted). */
  get size(): number {
    return this.#entries?.size ?? 0;
  }

  get stats(): VerifyCacheStats {
    return { hits: this.#hits, coalesced: this.#coalesced, verifications: this.#verifications };
  }

  clear(): void {
    this.#entries?.clear();
  }

  #isFresh(key: string): boolean {
    const expiresAt = this.#entries?.get(key);
    if (expiresAt === undefined) return false;
    if (this.#now() < expiresAt) return true;
    this.#entries?.delete(key);
    return false;
  }

  #key(username: string, storedHash: string, password: string): string {
    // Stored hashes never contain NUL, so two inputs could only collide through a configured
    // username that itself contains NUL followed by a whole hash.
    return createHmac('sha256', this.#secret)
      .update(`${username}\0${storedHash}\0${password}`, 'utf8')
      .digest('base64');
  }
}
