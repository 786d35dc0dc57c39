// Usage summaries at a bounded rate, off the reconcile path. A reconcile reads the last
// answer at once; when it is older than the interval (default 5 minutes) a fetch from
// the policy's relays starts in the background, and when its answer differs from the last
// one the policy is queued again (onUpdate), so the new numbers reach the SmtpUsers'
// status without any reconcile waiting on the relays. A failed fetch counts as an attempt
// too, so an unreachable admin Service is not hammered; the last answer stands meanwhile.
import type { PolicyUsage, UsageSource, UsageTarget } from './relay-usage.ts';

export interface SummaryLogger {
  warn(details: object, message: string): void;
}

export const DEFAULT_USAGE_INTERVAL_MS = 5 * 60_000;

interface Entry {
  attemptedAt: number;
  usage?: PolicyUsage;
  failing: boolean;
}

export class UsageSummaries {
  readonly #source: UsageSource;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #log: SummaryLogger | undefined;
  readonly #onUpdate: ((key: string) => void) | undefined;
  readonly #cache = new Map<string, Entry>();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: {
    source: UsageSource;
    intervalMs?: number;
    now?: () => number;
    log?: SummaryLogger;
    /** Told when a policy's usage changed (the controller queues the policy). */
    onUpdate?: (key: string) => void;
  }) {
    this.#source = options.source;
    this.#intervalMs = options.intervalMs ?? DEFAULT_USAGE_INTERVAL_MS;
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    this.#onUpdate = options.onUpdate;
  }

  /** The last usage of a policy (key namespace/name), undefined until a fetch worked; refreshes when due. */
  get(key: string, target: UsageTarget): PolicyUsage | undefined {
    const entry = this.#cache.get(key);
    if (!entry || this.#now() - entry.attemptedAt >= this.#intervalMs) this.#refresh(key, target, entry);
    return entry?.usage;
  }

  forget(key: string): void {
    this.#cache.delete(key);
  }

  /** Resolves when no fetch is running (tests). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  #refresh(key: string, target: UsageTarget, previous: Entry | undefined): void {
    const entry: Entry = {
      attemptedAt: this.#now(),
      failing: previous?.failing ?? false,
      ...(previous?.usage ? { usage: previous.usage } : {}),
    };
    this.#cache.set(key, entry);
    const run = this.#source.fetch(target).then(
      (usage) => {
        if (this.#cache.get(key) !== entry) return; // forgotten or refreshed again meanwhile
        const changed = entry.usage === undefined || fingerprint(entry.usage) !== fingerprint(usage);
        entry.usage = usage;
        entry.failing = false;
        if (changed) this.#onUpdate?.(key);
      },
      (err: unknown) => {
        // once per outage, not once per interval
        if (!entry.failing) {
          this.#log?.warn(
            { relayPolicy: key, err: err instanceof Error ? err.message : String(err) },
            'cannot read usage from the relays; SmtpUser usage and abuse status stay as they were',
          );
        }
        entry.failing = true;
      },
    );
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
  }
}

function fingerprint(usage: PolicyUsage): string {
  return JSON.stringify({ ...usage, today: [...usage.today] });
}
