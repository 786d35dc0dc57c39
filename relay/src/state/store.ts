import { SluiceError } from '../errors.ts';

// Shared state behind one interface: rate counters, AUTH failure counters and locks,
// connection slots, and a small cache (DNSBL answers). Two backends implement it, an
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
  close(): Promise<void>;
}

/** Raised by a store that cannot answer (shared state unreachable and policy says tempfail). */
export class StateUnavailableError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super('SLUICE_ERR_STATE_UNAVAILABLE', message, options);
    this.name = 'StateUnavailableError';
  }
}
