// The periodic side of abuse detection. Every intervalSeconds each relay refreshes the
// flags and suspensions from the state store (so all relays refuse a suspended user);
// one relay at a time (a lease in the store) also reads the hourly usage and applies the
// pure rules of detect.ts. A flag is written once per flagTtlSeconds for the whole
// cluster (the store's onlyIfAbsent), and only the relay that wrote it counts and logs
// it, so the metric and the log line are not multiplied by the number of pods.
import type { RelayConfig } from '../config/schema.ts';
import type { MapEntry, StateStore, UsageRow } from '../state/store.ts';
import { bucketName, bucketStart, PERIOD_MS, previousBuckets } from '../usage/buckets.ts';
import { OUTCOME_PREFIX, USAGE_COUNTERS } from '../usage/recorder.ts';
import {
  ABUSE_KINDS,
  type AbuseFinding,
  type AbuseKind,
  detectAbuse,
  type HourCounts,
  needsHistory,
} from './detect.ts';

export const FLAGS_KEY = 'abuse:flags';
export const SUSPENDED_KEY = 'abuse:suspended';
const LEASE_KEY = 'abuse:lease';
const BASELINE_HOURS = 24;

export interface AbuseFlag {
  user: string;
  kind: AbuseKind;
  reason: string;
  message: string;
  numbers: Record<string, number>;
  detectedAt: string;
  expiresAt: string;
}

export interface AbuseSuspension {
  user: string;
  kind: AbuseKind;
  reason: string;
  message: string;
  since: string;
  until: string;
}

export interface AbuseReport {
  autoSuspend: boolean;
  flags: AbuseFlag[];
  suspended: AbuseSuspension[];
}

export interface AbuseObserver {
  /** A new flag, counted once in the cluster. */
  flagged(kind: AbuseKind): void;
  /** What is flagged and suspended now (after every refresh). */
  current(flags: Readonly<Record<AbuseKind, number>>, suspended: number): void;
}

export interface AbuseLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface AbuseWatchOptions {
  store: Pick<StateStore, 'readUsage' | 'mapPut' | 'mapEntries' | 'mapDelete'>;
  config: () => RelayConfig['abuse'];
  logger: AbuseLogger;
  /** This relay's name in the evaluator lease. */
  instance: string;
  now?: () => number;
  observer?: AbuseObserver;
}

type Stored = {
  kind: AbuseKind;
  reason: string;
  message: string;
  numbers?: Record<string, number>;
  at: number;
};

export class AbuseWatch {
  readonly #o: AbuseWatchOptions;
  readonly #now: () => number;
  #suspended = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #failing = false;

  constructor(options: AbuseWatchOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Whether the relays refuse this user now (autoSuspend on, and a suspension live). */
  isSuspended(user: string): boolean {
    return this.#o.config().autoSuspend && this.#suspended.has(user);
  }

  start(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.tick().finally(() => this.start());
    }, this.#o.config().intervalSeconds * 1000);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One round: evaluate (if this relay holds the lease), then refresh. Never throws. */
  async tick(): Promise<AbuseFinding[]> {
    try {
      const found = this.#o.config().enabled && (await this.#lease()) ? await this.evaluate() : [];
      await this.refresh();
      if (this.#failing)
        this.#o.logger.info({ event: 'abuse_watch_recovered' }, 'abuse detection runs again');
      this.#failing = false;
      return found;
    } catch (err: unknown) {
      if (!this.#failing) {
        this.#o.logger.warn(
          { event: 'abuse_watch_failed', err: err instanceof Error ? err.message : String(err) },
          'abuse detection could not read the state store',
        );
      }
      this.#failing = true;
      return [];
    }
  }

  /** Reads the hourly usage, applies the rules, writes new flags (and suspensions); returns the findings. */
  async evaluate(): Promise<AbuseFinding[]> {
    const config = this.#o.config();
    const now = this.#now();
    const current = bucketStart(now, 'hour');
    const previous = current - PERIOD_MS.hour;
    const elapsed = (now - current) / PERIOD_MS.hour;
    const rows = await this.#o.store.readUsage([bucketName('hour', current), bucketName('hour', previous)]);
    const byUser = new Map<string, { current: HourCounts; previous: HourCounts }>();
    for (const row of rows) {
      const entry = byUser.get(row.user) ?? { current: EMPTY, previous: EMPTY };
      if (row.bucket === bucketName('hour', current)) entry.current = hourCounts(row);
      else entry.previous = hourCounts(row);
      byUser.set(row.user, entry);
    }
    const users = [...byUser].map(([user, h]) => ({ user, ...h, elapsed }));
    const needy = users.filter((u) => needsHistory(u, config)).map((u) => u.user);
    const history = new Map<string, Map<string, number>>();
    const bounces = new Map<
      string,
      Required<Pick<HourCounts, 'deliveries' | 'invalidRecipients' | 'spamBlocks'>>
    >();
    if (needy.length > 0) {
      const buckets = previousBuckets(now, 'hour', BASELINE_HOURS).map((s) => bucketName('hour', s));
      for (const row of await this.#o.store.readUsage(buckets, needy)) {
        const perUser = history.get(row.user) ?? new Map<string, number>();
        perUser.set(row.bucket, row.counts[USAGE_COUNTERS.messages] ?? 0);
        history.set(row.user, perUser);
        const h = hourCounts(row);
        const total = bounces.get(row.user) ?? { deliveries: 0, invalidRecipients: 0, spamBlocks: 0 };
        total.deliveries += h.deliveries ?? 0;
        total.invalidRecipients += h.invalidRecipients ?? 0;
        total.spamBlocks += h.spamBlocks ?? 0;
        bounces.set(row.user, total);
      }
    }
    const findings = users.flatMap((u) => {
      const own = history.get(u.user);
      const baseline = previousBuckets(now, 'hour', BASELINE_HOURS).map(
        (s) => own?.get(bucketName('hour', s)) ?? 0,
      );
      const bounceHistory = bounces.get(u.user);
      return detectAbuse({ ...u, history: baseline, ...(bounceHistory ? { bounceHistory } : {}) }, config);
    });
    for (const finding of findings) await this.#raise(finding, now);
    return findings;
  }

  /** Re-reads flags and suspensions; what isSuspended answers from. */
  async refresh(): Promise<AbuseReport> {
    const report = await this.report();
    this.#suspended = new Set(report.suspended.map((s) => s.user));
    const counts = Object.fromEntries(ABUSE_KINDS.map((k) => [k, 0])) as Record<AbuseKind, number>;
    for (const f of report.flags) counts[f.kind]++;
    this.#o.observer?.current(counts, report.autoSuspend ? report.suspended.length : 0);
    return report;
  }

  /** The live flags and suspensions of the cluster, from the state store. */
  async report(): Promise<AbuseReport> {
    const now = this.#now();
    const [flags, suspended] = await Promise.all([
      this.#o.store.mapEntries(FLAGS_KEY, now),
      this.#o.store.mapEntries(SUSPENDED_KEY, now),
    ]);
    return {
      autoSuspend: this.#o.config().autoSuspend,
      flags: flags.flatMap((e) => {
        const s = parse(e);
        const user = e.field.slice(0, e.field.lastIndexOf(':'));
        if (!s) return [];
        return [
          {
            user,
            kind: s.kind,
            reason: s.reason,
            message: s.message,
            numbers: s.numbers ?? {},
            detectedAt: new Date(s.at).toISOString(),
            expiresAt: new Date(e.expiresAt).toISOString(),
          },
        ];
      }),
      suspended: suspended.flatMap((e) => {
        const s = parse(e);
        if (!s) return [];
        return [
          {
            user: e.field,
            kind: s.kind,
            reason: s.reason,
            message: s.message,
            since: new Date(s.at).toISOString(),
            until: new Date(e.expiresAt).toISOString(),
          },
        ];
      }),
    };
  }

  /** Lifts a user's suspension and clears their flags; returns whether there was any. */
  async lift(user: string): Promise<boolean> {
    const removed = await Promise.all([
      this.#o.store.mapDelete(SUSPENDED_KEY, user),
      ...ABUSE_KINDS.map((k) => this.#o.store.mapDelete(FLAGS_KEY, `${user}:${k}`)),
    ]);
    this.#suspended.delete(user);
    const any = removed.some(Boolean);
    if (any) this.#o.logger.info({ event: 'abuse_lifted', user }, 'abuse flags and suspension lifted');
    return any;
  }

  /** Whether this relay evaluates this round: it takes the lease, or already holds it. */
  async #lease(): Promise<boolean> {
    const now = this.#now();
    // a little shorter than the interval, so the holder renews it on its next round
    const ttl = Math.max(1000, this.#o.config().intervalSeconds * 900);
    if (await this.#o.store.mapPut(LEASE_KEY, 'evaluator', this.#o.instance, ttl, now, true)) return true;
    const [holder] = await this.#o.store.mapEntries(LEASE_KEY, now);
    return holder?.value === this.#o.instance;
  }

  async #raise(f: AbuseFinding, now: number): Promise<void> {
    const config = this.#o.config();
    const stored: Stored = {
      kind: f.kind,
      reason: f.reason,
      message: f.message,
      numbers: f.numbers,
      at: now,
    };
    const field = `${f.user}:${f.kind}`;
    const isNew = await this.#o.store.mapPut(
      FLAGS_KEY,
      field,
      JSON.stringify(stored),
      config.flagTtlSeconds * 1000,
      now,
      true,
    );
    if (isNew) {
      this.#o.observer?.flagged(f.kind);
      this.#o.logger.warn(
        { event: 'abuse_suspected', user: f.user, kind: f.kind, reason: f.reason, numbers: f.numbers },
        f.message,
      );
    }
    if (!config.autoSuspend) return;
    const suspended = await this.#o.store.mapPut(
      SUSPENDED_KEY,
      f.user,
      JSON.stringify({ ...stored, numbers: undefined }),
      config.suspendSeconds * 1000,
      now,
      true,
    );
    if (suspended) {
      this.#suspended.add(f.user);
      this.#o.logger.warn(
        {
          event: 'abuse_suspended',
          user: f.user,
          kind: f.kind,
          reason: f.reason,
          until: new Date(now + config.suspendSeconds * 1000).toISOString(),
        },
        'user suspended automatically (abuse.autoSuspend)',
      );
    }
  }
}

const EMPTY: HourCounts = { messages: 0, rejected: 0, distinctClientIps: 0 };

function hourCounts(row: UsageRow): HourCounts {
  return {
    messages: row.counts[USAGE_COUNTERS.messages] ?? 0,
    rejected: row.counts[USAGE_COUNTERS.rejected] ?? 0,
    distinctClientIps: row.distinct,
    deliveries:
      (row.counts[`${OUTCOME_PREFIX}delivered`] ?? 0) + (row.counts[`${OUTCOME_PREFIX}bounced`] ?? 0),
    invalidRecipients: row.counts[`${OUTCOME_PREFIX}bounced:invalid-recipient`] ?? 0,
    spamBlocks: row.counts[`${OUTCOME_PREFIX}bounced:spam-block`] ?? 0,
  };
}

function parse(entry: MapEntry): Stored | undefined {
  try {
    const v = JSON.parse(entry.value) as Partial<Stored>;
    if (typeof v.kind !== 'string' || !ABUSE_KINDS.includes(v.kind) || typeof v.at !== 'number')
      return undefined;
    return {
      kind: v.kind,
      reason: String(v.reason ?? ''),
      message: String(v.message ?? ''),
      numbers: v.numbers ?? {},
      at: v.at,
    };
  } catch {
    return undefined; // written by something else
  }
}
