// The in-process state store: the default backend, and the fallback while Redis is down.
// Same semantics as the Redis store (same sliding-window arithmetic, exported here so
// both backends compute identical decisions). Bounded memory: entries expire lazily on
// access, an unref'd timer sweeps the rest, and a size cap evicts the oldest entries
// should a flood of distinct keys outrun the sweep.
import type {
  FailureRule,
  MapEntry,
  RateDecision,
  RateRule,
  StateStore,
  UsageRow,
  UsageUpdate,
} from './store.ts';

/** Counts of one sliding window at `now`: the current and previous fixed buckets. */
export interface WindowCounts {
  prev: number;
  curr: number;
  /** Milliseconds since the current bucket began. */
  elapsed: number;
}

/** The fixed bucket `now` falls in, and how far into it `now` is. */
export function bucketAt(now: number, windowMs: number): { index: number; elapsed: number } {
  const index = Math.floor(now / windowMs);
  return { index, elapsed: now - index * windowMs };
}

/** Key of one fixed bucket; the window is part of it so a changed window starts afresh. */
export function bucketKey(key: string, windowMs: number, index: number): string {
  return `${key}:w${windowMs}:${index}`;
}

/** Cloudflare's estimate: the previous bucket weighted by how much of it still overlaps. */
export function slidingEstimate(c: WindowCounts, windowMs: number): number {
  // Multiply before dividing, in this order, so Lua (doubles too) gets the same bits.
  return (c.prev * (windowMs - c.elapsed)) / windowMs + c.curr;
}

/** Index of the first rule that has no room for its cost, or -1. */
export function firstBlocked(rules: readonly RateRule[], counts: readonly WindowCounts[]): number {
  return rules.findIndex((r, i) => slidingEstimate(counts[i]!, r.windowMs) + r.cost > r.limit);
}

/** Milliseconds until a blocked rule has room for its cost, if nothing else is consumed. */
export function retryAfterMs(rule: RateRule, c: WindowCounts): number {
  const { cost, limit, windowMs: w } = rule;
  if (cost > limit) return w;
  const room = limit - cost - c.curr;
  // Room within this bucket: wait until the previous bucket's weight has decayed enough.
  // Otherwise: wait for the next bucket, where this one becomes the decaying previous.
  const wait =
    room >= 0
      ? w - c.elapsed - (room * w) / c.prev
      : w - c.elapsed + Math.max(0, w - ((limit - cost) * w) / c.curr);
  return Math.min(w, Math.max(1, Math.ceil(wait)));
}

/** The decision for counts read before the update; `blocked` is the first blocked rule or -1. */
export function rateDecision(
  rules: readonly RateRule[],
  counts: readonly WindowCounts[],
  blocked: number,
): RateDecision {
  const allowed = blocked < 0;
  const remaining = rules.map((r, i) => {
    const left = r.limit - slidingEstimate(counts[i]!, r.windowMs) - (allowed ? r.cost : 0);
    return Math.max(0, Math.floor(left));
  });
  if (allowed) return { allowed, retryAfterMs: 0, remaining };
  return {
    allowed,
    blockedBy: blocked,
    retryAfterMs: retryAfterMs(rules[blocked]!, counts[blocked]!),
    remaining,
  };
}

/** The keys of one user's usage in one bucket (the same in both backends). */
export function usageKeys(bucket: string, user: string): { users: string; counts: string; distinct: string } {
  return { users: `${bucket}:users`, counts: `${bucket}:c:${user}`, distinct: `${bucket}:d:${user}` };
}

/**
 * Distinct values kept per usage bucket and user in memory; beyond it the count stays
 * there (Redis counts on with a HyperLogLog). Far above any abuse threshold.
 */
export const MAX_DISTINCT_IN_MEMORY = 1024;

type Entry =
  | { type: 'counter'; count: number; expiresAt: number }
  | { type: 'string'; value: string; expiresAt: number }
  | { type: 'slots'; slots: Map<string, number>; expiresAt: number }
  | { type: 'counts'; counts: Map<string, number>; expiresAt: number }
  | { type: 'set'; values: Set<string>; expiresAt: number }
  | { type: 'map'; fields: Map<string, { value: string; expiresAt: number }>; expiresAt: number };

export interface MemoryStoreOptions {
  /** Clock for TTLs (the Redis server's clock in the other backend). Default Date.now. */
  clock?: () => number;
  /** How often expired entries are swept. Default 10 s. */
  sweepIntervalMs?: number;
  /** Entry cap; beyond it the oldest entries are evicted. Default 500 000. */
  maxEntries?: number;
}

export class MemoryStore implements StateStore {
  readonly kind = 'memory';
  readonly #entries = new Map<string, Entry>();
  readonly #clock: () => number;
  readonly #maxEntries: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? Date.now;
    this.#maxEntries = options.maxEntries ?? 500_000;
    this.#timer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 10_000);
    this.#timer.unref();
  }

  /** Number of entries held, expired or not (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  /** Drops every expired entry. */
  sweep(): void {
    const now = this.#clock();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now) this.#entries.delete(key);
    }
  }

  async consume(rules: readonly RateRule[], now: number): Promise<RateDecision> {
    const counts = rules.map((r) => this.#windowCounts(r.key, r.windowMs, now));
    const blocked = firstBlocked(rules, counts);
    if (blocked < 0) {
      for (const r of rules) {
        if (r.cost > 0) this.#increment(r.key, r.windowMs, now, r.cost);
      }
    }
    return rateDecision(rules, counts, blocked);
  }

  async recordFailure(rules: readonly FailureRule[], now: number): Promise<boolean[]> {
    return rules.map((r) => {
      const counts = this.#windowCounts(r.counterKey, r.windowMs, now);
      counts.curr = this.#increment(r.counterKey, r.windowMs, now, 1);
      if (slidingEstimate(counts, r.windowMs) >= r.threshold && !this.#live(r.lockKey)) {
        this.#set(r.lockKey, { type: 'string', value: '1', expiresAt: this.#clock() + ttl(r.cooldownMs) });
      }
      return this.#live(r.lockKey) !== undefined;
    });
  }

  async lockRemaining(keys: readonly string[]): Promise<number[]> {
    const now = this.#clock();
    return keys.map((key) => {
      const entry = this.#live(key);
      return entry ? Math.max(0, entry.expiresAt - now) : 0;
    });
  }

  async acquireSlot(
    key: string,
    slotId: string,
    limit: number,
    ttlMs: number,
    now: number,
  ): Promise<boolean> {
    const entry = this.#live(key);
    const slots = entry?.type === 'slots' ? entry.slots : new Map<string, number>();
    for (const [id, expiry] of slots) {
      if (expiry <= now) slots.delete(id);
    }
    const taken = slots.has(slotId) || slots.size < limit;
    if (taken) slots.set(slotId, now + ttlMs);
    if (slots.size === 0) {
      this.#entries.delete(key);
      return taken;
    }
    // Like the Redis sorted set: the key lives as long as its longest-lived slot.
    const last = Math.max(...slots.values());
    this.#set(key, { type: 'slots', slots, expiresAt: this.#clock() + ttl(last - now) });
    return taken;
  }

  async releaseSlot(key: string, slotId: string): Promise<void> {
    const entry = this.#live(key);
    if (entry?.type !== 'slots') return;
    entry.slots.delete(slotId);
    if (entry.slots.size === 0) this.#entries.delete(key);
  }

  async getCache(key: string): Promise<string | null> {
    const entry = this.#live(key);
    return entry?.type === 'string' ? entry.value : null;
  }

  async setCache(key: string, value: string, ttlMs: number): Promise<void> {
    this.#set(key, { type: 'string', value, expiresAt: this.#clock() + ttl(ttlMs) });
  }

  async addUsage(updates: readonly UsageUpdate[]): Promise<void> {
    for (const u of updates) {
      const keys = usageKeys(u.bucket, u.user);
      const expiresAt = this.#clock() + ttl(u.ttlMs);
      const counts = this.#live(keys.counts);
      const map = counts?.type === 'counts' ? counts.counts : new Map<string, number>();
      for (const [name, n] of Object.entries(u.counts)) map.set(name, (map.get(name) ?? 0) + n);
      this.#set(keys.counts, { type: 'counts', counts: map, expiresAt });
      if (u.distinct.length > 0) {
        const values = this.#setOf(keys.distinct);
        for (const v of u.distinct) if (values.size < MAX_DISTINCT_IN_MEMORY) values.add(v);
        this.#set(keys.distinct, { type: 'set', values, expiresAt });
      }
      const users = this.#setOf(keys.users);
      users.add(u.user);
      this.#set(keys.users, { type: 'set', values: users, expiresAt });
    }
  }

  async readUsage(buckets: readonly string[], users?: readonly string[]): Promise<UsageRow[]> {
    const rows: UsageRow[] = [];
    for (const bucket of buckets) {
      const names = users ?? [...this.#setOf(usageKeys(bucket, '').users)].sort();
      for (const name of names) {
        const keys = usageKeys(bucket, name);
        const counts = this.#live(keys.counts);
        const distinct = this.#live(keys.distinct);
        if (counts?.type !== 'counts' && distinct?.type !== 'set') continue;
        rows.push({
          bucket,
          user: name,
          counts: counts?.type === 'counts' ? Object.fromEntries(counts.counts) : {},
          distinct: distinct?.type === 'set' ? distinct.values.size : 0,
        });
      }
    }
    return rows;
  }

  async mapPut(
    key: string,
    field: string,
    value: string,
    ttlMs: number,
    now: number,
    onlyIfAbsent: boolean,
  ): Promise<boolean> {
    const fields = this.#liveMap(key, now);
    if (onlyIfAbsent && fields.has(field)) return false;
    fields.set(field, { value, expiresAt: now + ttlMs });
    // Like the Redis pair of keys: the map lives as long as its longest-lived field.
    const last = Math.max(...[...fields.values()].map((f) => f.expiresAt));
    this.#set(key, { type: 'map', fields, expiresAt: this.#clock() + ttl(last - now) });
    return true;
  }

  async mapEntries(key: string, now: number): Promise<MapEntry[]> {
    return [...this.#liveMap(key, now)]
      .map(([field, f]) => ({ field, value: f.value, expiresAt: f.expiresAt }))
      .sort((a, b) => a.expiresAt - b.expiresAt || (a.field < b.field ? -1 : 1));
  }

  async mapGet(key: string, field: string, now: number): Promise<MapEntry | null> {
    const entry = this.#live(key);
    const f = entry?.type === 'map' ? entry.fields.get(field) : undefined;
    return f === undefined || f.expiresAt <= now ? null : { field, value: f.value, expiresAt: f.expiresAt };
  }

  async mapGetMany(key: string, fields: readonly string[], now: number): Promise<Array<MapEntry | null>> {
    return Promise.all(fields.map((field) => this.mapGet(key, field, now)));
  }

  async mapDelete(key: string, field: string): Promise<boolean> {
    const entry = this.#live(key);
    if (entry?.type !== 'map') return false;
    const had = entry.fields.delete(field);
    if (entry.fields.size === 0) this.#entries.delete(key);
    return had;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#entries.clear();
  }

  /** The entry under key unless it has expired (then it is dropped). */
  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.#clock()) return entry;
    this.#entries.delete(key);
    return undefined;
  }

  /** The set under key, empty (and not stored) when there is none. */
  #setOf(key: string): Set<string> {
    const entry = this.#live(key);
    return entry?.type === 'set' ? entry.values : new Set<string>();
  }

  /** The fields of a map that are live at `now` (expired ones are dropped). */
  #liveMap(key: string, now: number): Map<string, { value: string; expiresAt: number }> {
    const entry = this.#live(key);
    const fields =
      entry?.type === 'map' ? entry.fields : new Map<string, { value: string; expiresAt: number }>();
    for (const [field, f] of fields) if (f.expiresAt <= now) fields.delete(field);
    return fields;
  }

  #count(key: string): number {
    const entry = this.#live(key);
    return entry?.type === 'counter' ? entry.count : 0;
  }

  #windowCounts(key: string, windowMs: number, now: number): WindowCounts {
    const { index, elapsed } = bucketAt(now, windowMs);
    return {
      curr: this.#count(bucketKey(key, windowMs, index)),
      prev: this.#count(bucketKey(key, windowMs, index - 1)),
      elapsed,
    };
  }

  /** Adds to the current bucket and (re)sets its TTL to two windows, as INCRBY + PEXPIRE. */
  #increment(key: string, windowMs: number, now: number, by: number): number {
    const k = bucketKey(key, windowMs, bucketAt(now, windowMs).index);
    const count = this.#count(k) + by;
    this.#set(k, { type: 'counter', count, expiresAt: this.#clock() + 2 * windowMs });
    return count;
  }

  #set(key: string, entry: Entry): void {
    if (!this.#entries.has(key) && this.#entries.size >= this.#maxEntries) {
      // Map iterates in insertion order: the first key is the oldest.
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, entry);
  }
}

/** TTLs are whole milliseconds, at least 1 (Redis refuses PX 0). */
function ttl(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}
