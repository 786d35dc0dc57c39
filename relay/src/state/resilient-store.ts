// Shared state that survives Redis going away. While Redis answers, every call goes to
// it. The first failed call (connection refused, timeout, no offline queue) or a client
// 'error'/'close'/'end' marks it DOWN: one warn line, one 'health' event, and from then
// on calls are served by the local store (onDown 'local': per-pod limits) or refused
// with StateUnavailableError (onDown 'tempfail') without touching Redis, until the client
// is 'ready' again. The call that failed is still answered the same way.
import { EventEmitter } from 'node:events';
import { ReplyError } from 'ioredis';
import type { MemoryStore } from './memory-store.ts';
import type { RedisClient, RedisStore } from './redis-store.ts';
import {
  type FailureRule,
  type MapEntry,
  type RateDecision,
  type RateRule,
  type StateStore,
  StateUnavailableError,
  type UsageRow,
  type UsageUpdate,
} from './store.ts';

export interface StateHealth {
  shared: boolean;
  detail: string;
}

export interface StateLogger {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
}

export interface ResilientStoreOptions {
  redis: RedisStore;
  /** The client under `redis`, watched for 'ready', 'error', 'close' and 'end'. */
  client: RedisClient;
  local: MemoryStore;
  onDown: 'local' | 'tempfail';
  logger: StateLogger;
}

type Phase = 'connecting' | 'up' | 'down';

export class ResilientStore extends EventEmitter<{ health: [StateHealth] }> implements StateStore {
  readonly #redis: RedisStore;
  readonly #client: RedisClient;
  readonly #local: MemoryStore;
  readonly #onDown: 'local' | 'tempfail';
  readonly #logger: StateLogger;
  #phase: Phase;
  #reason = '';
  #replyErrorLogged = false;
  /** Counts recoveries, so a call that started before one cannot undo it when it fails. */
  #epoch = 0;
  #closed: Promise<void> | undefined;
  readonly #onReady = () => this.#markUp();
  readonly #onError = (err: unknown) => this.#clientTrouble(`client error: ${describe(err)}`);
  readonly #onClose = () => this.#clientTrouble('connection closed');
  readonly #onEnd = () => this.#clientTrouble('connection ended');

  constructor(options: ResilientStoreOptions) {
    super();
    this.#redis = options.redis;
    this.#client = options.client;
    this.#local = options.local;
    this.#onDown = options.onDown;
    this.#logger = options.logger;
    this.#phase = options.client.status === 'ready' ? 'up' : 'connecting';
    this.#client.on('ready', this.#onReady);
    this.#client.on('error', this.#onError);
    this.#client.on('close', this.#onClose);
    this.#client.on('end', this.#onEnd);
  }

  /** True while calls go to Redis. */
  get shared(): boolean {
    return this.#phase === 'up';
  }

  /** One line for readiness detail. */
  get detail(): string {
    if (this.#phase === 'up') return 'shared state in Redis';
    const serving = this.#onDown === 'local' ? 'serving from local state' : 'failing temporarily';
    if (this.#phase === 'connecting') return `connecting to Redis; ${serving}`;
    return `Redis unreachable (${this.#reason}); ${serving}`;
  }

  /** The backend answering now. */
  get kind(): 'memory' | 'redis' {
    return this.#phase !== 'up' && this.#onDown === 'local' ? 'memory' : 'redis';
  }

  consume(rules: readonly RateRule[], now: number): Promise<RateDecision> {
    return this.#call((s) => s.consume(rules, now));
  }

  recordFailure(rules: readonly FailureRule[], now: number): Promise<boolean[]> {
    return this.#call((s) => s.recordFailure(rules, now));
  }

  lockRemaining(keys: readonly string[]): Promise<number[]> {
    return this.#call((s) => s.lockRemaining(keys));
  }

  acquireSlot(key: string, slotId: string, limit: number, ttlMs: number, now: number): Promise<boolean> {
    return this.#call((s) => s.acquireSlot(key, slotId, limit, ttlMs, now));
  }

  releaseSlot(key: string, slotId: string): Promise<void> {
    return this.#call((s) => s.releaseSlot(key, slotId));
  }

  getCache(key: string): Promise<string | null> {
    return this.#call((s) => s.getCache(key));
  }

  setCache(key: string, value: string, ttlMs: number): Promise<void> {
    return this.#call((s) => s.setCache(key, value, ttlMs));
  }

  addUsage(updates: readonly UsageUpdate[]): Promise<void> {
    return this.#call((s) => s.addUsage(updates));
  }

  readUsage(buckets: readonly string[], users?: readonly string[]): Promise<UsageRow[]> {
    return this.#call((s) => s.readUsage(buckets, users));
  }

  mapPut(
    key: string,
    field: string,
    value: string,
    ttlMs: number,
    now: number,
    onlyIfAbsent: boolean,
  ): Promise<boolean> {
    return this.#call((s) => s.mapPut(key, field, value, ttlMs, now, onlyIfAbsent));
  }

  mapEntries(key: string, now: number): Promise<MapEntry[]> {
    return this.#call((s) => s.mapEntries(key, now));
  }

  mapGet(key: string, field: string, now: number): Promise<MapEntry | null> {
    return this.#call((s) => s.mapGet(key, field, now));
  }

  mapGetMany(key: string, fields: readonly string[], now: number): Promise<Array<MapEntry | null>> {
    return this.#call((s) => s.mapGetMany(key, fields, now));
  }

  mapDelete(key: string, field: string): Promise<boolean> {
    return this.#call((s) => s.mapDelete(key, field));
  }

  close(): Promise<void> {
    this.#closed ??= this.#shutdown();
    return this.#closed;
  }

  async #shutdown(): Promise<void> {
    // Quitting closes the connection on purpose: that is not an outage to report.
    this.#client.off('ready', this.#onReady);
    this.#client.off('close', this.#onClose);
    this.#client.off('end', this.#onEnd);
    this.#client.off('error', this.#onError);
    this.#client.on('error', ignore); // late socket errors while quitting stay quiet
    await Promise.all([this.#redis.close(), this.#local.close()]);
  }

  async #call<T>(op: (store: StateStore) => Promise<T>): Promise<T> {
    let cause: unknown;
    if (this.#phase === 'up') {
      const epoch = this.#epoch;
      try {
        const result = await op(this.#redis);
        this.#replyErrorLogged = false;
        return result;
      } catch (err: unknown) {
        cause = err;
        if (epoch === this.#epoch) this.#callFailed(err);
      }
    }
    if (this.#onDown === 'tempfail') {
      // Still 'up' here means Redis answered with an error rather than being unreachable.
      const message = this.#phase === 'up' ? `shared state call failed (${describe(cause)})` : this.detail;
      throw new StateUnavailableError(message, { cause });
    }
    return op(this.#local);
  }

  #callFailed(err: unknown): void {
    if (err instanceof ReplyError) {
      // Redis is reachable and refused this one call (OOM, a script error): answer it
      // locally, but the connection is fine, so health does not change.
      if (!this.#replyErrorLogged) {
        this.#replyErrorLogged = true;
        this.#logger.warn({ event: 'shared_state_error', reason: describe(err) }, 'shared state call failed');
      }
      return;
    }
    this.#markDown(describe(err));
    // A timeout on a socket that still looks healthy would never produce a new 'ready':
    // reconnect, so recovery is observed the same way as after an outage.
    if (this.#client.status === 'ready') this.#client.disconnect(true);
  }

  #clientTrouble(reason: string): void {
    // Events from a connection that is (again) ready are stale.
    if (this.#client.status !== 'ready') this.#markDown(reason);
  }

  #markDown(reason: string): void {
    if (this.#phase === 'down') return;
    this.#phase = 'down';
    this.#reason = reason;
    this.#logger.warn(
      { event: 'shared_state_down', reason, onDown: this.#onDown, detail: this.detail },
      'shared state unreachable',
    );
    this.emit('health', { shared: false, detail: this.detail });
  }

  #markUp(): void {
    if (this.#phase === 'up') return;
    this.#phase = 'up';
    this.#epoch += 1;
    this.#reason = '';
    this.#logger.info({ event: 'shared_state_up', detail: this.detail }, 'shared state reachable');
    this.emit('health', { shared: true, detail: this.detail });
  }
}

function ignore(): void {}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
