import { SluiceError } from '../errors.ts';

// Shared state behind one interface: rate counters, AUTH failure counters and locks,
// connection slots, a small cache (DNSBL answers), usage buckets per user and expiring
// maps (abuse flags and suspensions). Two backends implement it, an
// in-memory one (one process) and a Redis one (every relay pod of a policy); the same
// contract tests run against both. Keys are given without prefix; each backend puts
// them under its namespace. Every multi-step update is atomic and every key it writes
// carries a TTL set in the same step.

/** One rate limit to check and consume: `cost` units against `limit` per sliding window. */
export interface RateRule {
  key: string;
  cost: number;
  limit: number;
  windowMs: number;
}

export interface RateDecision {
  /** True when every rule had room; then all were consumed, otherwise none was. */
  allowed: boolean;
  /** Index in the rules of the first rule over its limit. */
  blockedBy?: number;
  /** When the blocking rule has room again for its cost (0 when allowed). */
  retryAfterMs: number;
  /** Units left per rule after this call. */
  remaining: number[];
}

export interface FailureRule {
  /** Failure counter, counted in a sliding window. */
  counterKey: string;
  /** Lock set when the counter reaches threshold. */
  lockKey: string;
  threshold: number;
  windowMs: number;
  cooldownMs: number;
}

/** Counts to add to one user's usage bucket, and values whose distinct number is kept. */
export interface UsageUpdate {
  /** The bucket (period and start, e.g. usage:h:2025-07-01T10); it lists its users. */
  bucket: string;
  user: string;
  /** Integer amounts to add, by counter name. */
  counts: Readonly<Record<string, number>>;
  /** Values (client IPs) counted once each per bucket and user. */
  distinct: readonly string[];
  /** Lifetime of the bucket, renewed by every update. */
  ttlMs: number;
}

/** What one bucket holds for one user. */
export interface UsageRow {
  bucket: string;
  user: string;
  counts: Record<string, number>;
  /** Distinct values added (HyperLogLog on Redis: exact for a few, about ±1 % beyond). */
  distinct: number;
}

/** One live field of an expiring map. */
export interface MapEntry {
  field: string;
  value: string;
  /** Epoch ms, on the callers' clock (`now`). */
  expiresAt: number;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis';
  /** All-or-nothing consumption of several rate limits (sliding-window counters). */
  consume(rules: readonly RateRule[], now: number): Promise<RateDecision>;
  /** Counts one failure per rule; returns, per rule, whether its lock is now set. */
  recordFailure(rules: readonly FailureRule[], now: number): Promise<boolean[]>;
  /** Milliseconds each lock has left (0 when not locked). */
  lockRemaining(keys: readonly string[]): Promise<number[]>;
  /** Takes a slot under key unless `limit` live slots exist; a slot expires after ttlMs. */
  acquireSlot(key: string, slotId: string, limit: number, ttlMs: number, now: number): Promise<boolean>;
  releaseSlot(key: string, slotId: string): Promise<void>;
  getCache(key: string): Promise<string | null>;
  setCache(key: string, value: string, ttlMs: number): Promise<void>;
  /** Adds to usage buckets (all updates in one step). */
  addUsage(updates: readonly UsageUpdate[]): Promise<void>;
  /** The rows of the given buckets, for every user they list or only the given users. */
  readUsage(buckets: readonly string[], users?: readonly string[]): Promise<UsageRow[]>;
  /**
   * Sets a field of an expiring map (each field has its own expiry, on the callers' clock).
   * With onlyIfAbsent a live field is kept as it is. Returns whether the field was set.
   */
  mapPut(
    key: string,
    field: string,
    value: string,
    ttlMs: number,
    now: number,
    onlyIfAbsent: boolean,
  ): Promise<boolean>;
  /** The live fields of an expiring map, in expiry order. */
  mapEntries(key: string, now: number): Promise<MapEntry[]>;
  /** One live field of an expiring map, or null. */
  mapGet(key: string, field: string, now: number): Promise<MapEntry | null>;
  /** Several live fields of an expiring map in one step, each in its place or null. */
  mapGetMany(key: string, fields: readonly string[], now: number): Promise<Array<MapEntry | null>>;
  /** Removes a field; returns whether it was there. */
  mapDelete(key: string, field: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Raised by a store that cannot answer (shared state unreachable and policy says tempfail). */
export class StateUnavailableError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super('SLUICE_ERR_STATE_UNAVAILABLE', message, options);
    this.name = 'StateUnavailableError';
  }
}
