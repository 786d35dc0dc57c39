// Usage per user, added up in memory and written to the state store in one batch every
// flushIntervalSeconds: an accepted message costs no state-store round trip of its own,
// a relay makes one per interval whatever its traffic. close() writes what is left; a
// crash loses at most one interval of usage (never mail).
import type { RelayConfig } from '../config/schema.ts';
import { MAX_DISTINCT_IN_MEMORY } from '../state/memory-store.ts';
import type { StateStore, UsageUpdate } from '../state/store.ts';
import { bucketName, bucketStart, PERIOD_MS, type UsagePeriod } from './buckets.ts';

/** Counter names in a usage bucket; refusals are counted by reason as `rej:<reason>`. */
export const USAGE_COUNTERS = {
  messages: 'messages',
  recipients: 'recipients',
  bytes: 'bytes',
  /** Refusals that ended a transaction (at MAIL FROM or end of DATA). */
  rejected: 'rejected',
  auths: 'auths',
} as const;

export const REJECTION_PREFIX = 'rej:';
/** Delivery outcomes per recipient attempt: `out:<result>` and `out:<result>:<class>`. */
export const OUTCOME_PREFIX = 'out:';

/** SMTP stages whose refusal ends the transaction: the message was not sent. */
const ENDS_TRANSACTION = new Set(['mail', 'data']);

/** What the SMTP front reports; every call is in memory only. */
export interface UsageEvents {
  accepted(user: string, message: { recipients: number; bytes: number }): void;
  rejected(user: string, reason: string, stage: string): void;
  authenticated(user: string, clientIp: string): void;
}

export interface UsageLogger {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

export interface UsageRecorderOptions {
  store: Pick<StateStore, 'addUsage'>;
  config: () => RelayConfig['usage'];
  now?: () => number;
  logger: UsageLogger;
  /** Told of every flush (one state-store call) and whether it worked. */
  onFlush?: (ok: boolean) => void;
}

interface Pending {
  bucket: string;
  period: UsagePeriod;
  start: number;
  user: string;
  counts: Map<string, number>;
  distinct: Set<string>;
}

const PERIODS: readonly UsagePeriod[] = ['hour', 'day'];

/**
 * Counter names per delivery result and reply class, made once: three results and the
 * classes of the reply rules. Bounded all the same, should a caller pass other strings.
 */
const outcomeNames = new Map<string, Map<string, readonly [string, string]>>();
const MAX_OUTCOME_NAMES = 256;
let outcomeNameCount = 0;

function outcomeCounters(result: string, cls: string): readonly [string, string] {
  let byClass = outcomeNames.get(result);
  let names = byClass?.get(cls);
  if (names) return names;
  names = [`${OUTCOME_PREFIX}${result}`, `${OUTCOME_PREFIX}${result}:${cls}`];
  if (outcomeNameCount < MAX_OUTCOME_NAMES) {
    if (!byClass) {
      byClass = new Map();
      outcomeNames.set(result, byClass);
    }
    byClass.set(cls, names);
    outcomeNameCount++;
  }
  return names;
}

export class UsageRecorder implements UsageEvents {
  readonly #store: Pick<StateStore, 'addUsage'>;
  readonly #config: () => RelayConfig['usage'];
  readonly #now: () => number;
  readonly #logger: UsageLogger;
  readonly #onFlush: ((ok: boolean) => void) | undefined;
  /**
   * Entries waiting for the next flush, by bucket name and then user: both are strings the
   * recorder is given again and again (their hashes are kept), where a joined key would be
   * a new string to hash for every event.
   */
  #pending = new Map<string, Map<string, Pending>>();
  #flushing: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;
  readonly #lastBucket: Partial<Record<UsagePeriod, { start: number; name: string }>> = {};

  constructor(options: UsageRecorderOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.#onFlush = options.onFlush;
  }

  accepted(user: string, message: { recipients: number; bytes: number }): void {
    this.#add(user, [
      [USAGE_COUNTERS.messages, 1],
      [USAGE_COUNTERS.recipients, message.recipients],
      [USAGE_COUNTERS.bytes, message.bytes],
    ]);
  }

  rejected(user: string, reason: string, stage: string): void {
    const counts: Array<[string, number]> = [[`${REJECTION_PREFIX}${reason}`, 1]];
    if (ENDS_TRANSACTION.has(stage)) counts.push([USAGE_COUNTERS.rejected, 1]);
    this.#add(user, counts);
  }

  authenticated(user: string, clientIp: string): void {
    this.#add(user, [[USAGE_COUNTERS.auths, 1]], clientIp);
  }

  /** One recipient's delivery attempt: its result and the class of the answer. */
  delivery(user: string, result: string, cls: string): void {
    const [outcome, withClass] = outcomeCounters(result, cls);
    this.#add(user, [
      [outcome, 1],
      [withClass, 1],
    ]);
  }

  /** Bucket-and-user entries waiting for the next flush. */
  get pending(): number {
    let n = 0;
    for (const users of this.#pending.values()) n += users.size;
    return n;
  }

  /** Writes what has been added up so far in one state-store call. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushOnce());
    return this.#flushing;
  }

  /** Flushes every flushIntervalSeconds (read anew each time, so a reload applies). */
  start(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush().finally(() => this.start());
    }, this.#config().flushIntervalSeconds * 1000);
    this.#timer.unref();
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  /** bucketName, made once per bucket rather than twice per event (a Date and an ISO string each). */
  #bucketName(period: UsagePeriod, start: number): string {
    const last = this.#lastBucket[period];
    if (last?.start === start) return last.name;
    const name = bucketName(period, start);
    this.#lastBucket[period] = { start, name };
    return name;
  }

  #add(user: string, counts: ReadonlyArray<[string, number]>, distinct?: string): void {
    const now = this.#now();
    for (const period of PERIODS) {
      const start = bucketStart(now, period);
      const bucket = this.#bucketName(period, start);
      let entry = this.#pending.get(bucket)?.get(user);
      if (!entry) {
        entry = { bucket, period, start, user, counts: new Map(), distinct: new Set() };
        this.#put(entry);
      }
      for (const [name, n] of counts) entry.counts.set(name, (entry.counts.get(name) ?? 0) + n);
      if (distinct !== undefined && entry.distinct.size < MAX_DISTINCT_IN_MEMORY)
        entry.distinct.add(distinct);
    }
  }

  async #flushOnce(): Promise<void> {
    const batch = [...this.#pending.values()].flatMap((users) => [...users.values()]);
    if (batch.length === 0) return;
    this.#pending = new Map();
    const now = this.#now();
    const updates = batch
      .map(
        (p): UsageUpdate => ({
          bucket: p.bucket,
          user: p.user,
          counts: Object.fromEntries(p.counts),
          distinct: [...p.distinct],
          ttlMs: this.#keepUntil(p) - now,
        }),
      )
      .filter((u) => u.ttlMs > 0);
    try {
      await this.#store.addUsage(updates);
      this.#onFlush?.(true);
      if (this.#failing) this.#logger.info({ event: 'usage_flush_recovered' }, 'usage written again');
      this.#failing = false;
    } catch (err: unknown) {
      this.#onFlush?.(false);
      if (!this.#failing) {
        this.#logger.warn(
          { event: 'usage_flush_failed', err: err instanceof Error ? err.message : String(err) },
          'cannot write usage to the state store; keeping it for the next flush',
        );
      }
      this.#failing = true;
      for (const p of batch) this.#mergeBack(p);
    }
  }

  /** A bucket is kept for the retention after its end. */
  #keepUntil(p: Pending): number {
    const { hourRetentionHours, dayRetentionDays } = this.#config();
    const retention =
      p.period === 'hour' ? hourRetentionHours * PERIOD_MS.hour : dayRetentionDays * PERIOD_MS.day;
    return p.start + PERIOD_MS[p.period] + retention;
  }

  #put(p: Pending): void {
    let users = this.#pending.get(p.bucket);
    if (!users) {
      users = new Map();
      this.#pending.set(p.bucket, users);
    }
    users.set(p.user, p);
  }

  /** A failed flush's entry, added into whatever has been counted since. */
  #mergeBack(p: Pending): void {
    const newer = this.#pending.get(p.bucket)?.get(p.user);
    if (!newer) {
      this.#put(p);
      return;
    }
    for (const [name, n] of p.counts) newer.counts.set(name, (newer.counts.get(name) ?? 0) + n);
    for (const v of p.distinct) if (newer.distinct.size < MAX_DISTINCT_IN_MEMORY) newer.distinct.add(v);
  }
}
