// Shaping per destination group, shared by all relays of a policy: the group's open
// connections are slots in the state store, its messages are counted in a sliding
// window there, and a throttling reply (shaping-rules.ts) writes a slowdown or a
// suspension there that every relay reads before it sends to the group. A delivery that
// finds no room waits up to shaping.maxWaitSeconds, then is deferred (never bounced).
// Per job this costs one state read (throttle), one rate check, and for a new connection
// one slot acquire and one release (bench/shared-state.bench.ts measures it).
import type { ShapingConfig } from '../config/reputation-schema.ts';
import type { StateStore } from '../state/store.ts';
import { type Failure, local } from './delivery-results.ts';
import { classifyReply } from './reply-class.ts';
import {
  DEFAULT_GROUP,
  DEFAULT_SHAPING_GROUPS,
  SLOW_LIMITS,
  THROTTLE_RULES,
  type ThrottleAction,
} from './shaping-rules.ts';
import type { RecipientResult } from './types.ts';

export interface GroupLimits {
  group: string;
  connections: number;
  connectionsPerMinute: number;
  messagesPerConnection: number;
  messagesPerSecond: number;
}

export interface Throttle {
  action: ThrottleAction;
  /** Epoch ms. */
  until: number;
  /** The reply that caused it. */
  reply: string;
}

/** The shared limits a delivery can wait for. */
export type Limit = 'connections' | 'connection_rate' | 'rate';

export interface ShapingObserver {
  /** A throttling reply slowed down or suspended a group (counted where the reply came). */
  throttled(group: string, action: ThrottleAction): void;
  /** A delivery had to wait for room (limit: connections or rate). */
  waited(group: string, limit: Limit): void;
  /** A job was deferred by shaping. */
  deferred(group: string, reason: 'suspended' | Limit): void;
  /** What this relay knows of a group's state after a look at the shared state. */
  state(limits: GroupLimits, throttle: Throttle | null): void;
  /** This relay's open connections to a group changed by delta. */
  connectionsChanged(group: string, delta: number): void;
}

export interface ShaperLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface ShaperOptions {
  store: Pick<StateStore, 'acquireSlot' | 'releaseSlot' | 'consume' | 'getCache' | 'setCache'>;
  config: () => ShapingConfig;
  /** This relay's name in slot ids. */
  instance: string;
  now?: () => number;
  logger: ShaperLogger;
  observer?: ShapingObserver;
  /** Waits between tries for room; real timers by default. */
  sleep?: (ms: number) => Promise<void>;
}

/** A connection slot survives a relay that died holding it this long. */
const SLOT_TTL_MS = 15 * 60_000;
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

/** The group of a domain whose MX hosts are these, by the first host's name (pure). */
export function groupOf(mxHosts: readonly string[], config: ShapingConfig): GroupLimits {
  const first = (mxHosts[0] ?? '').toLowerCase().replace(/\.$/, '');
  const groups = config.groups ?? DEFAULT_SHAPING_GROUPS;
  const match = groups.find((g) =>
    g.mxSuffixes.some((s) => {
      const suffix = s.toLowerCase();
      return (
        first.endsWith(suffix.startsWith('.') ? suffix : `.${suffix}`) || first === suffix.replace(/^\./, '')
      );
    }),
  );
  const d = config.default;
  return {
    group: match?.name ?? DEFAULT_GROUP,
    connections: match?.connections ?? d.connections,
    connectionsPerMinute: match?.connectionsPerMinute ?? d.connectionsPerMinute,
    messagesPerConnection: match?.messagesPerConnection ?? d.messagesPerConnection,
    messagesPerSecond: match?.messagesPerSecond ?? d.messagesPerSecond,
  };
}

/** The limits in force while a group is slowed down (pure). */
export function effectiveLimits(limits: GroupLimits, throttle: Throttle | null): GroupLimits {
  if (throttle?.action !== 'slow') return limits;
  return {
    ...limits,
    connections: Math.min(limits.connections, SLOW_LIMITS.connections),
    messagesPerSecond: Math.min(limits.messagesPerSecond, SLOW_LIMITS.messagesPerSecond),
  };
}

/** What a job's results do to its group, by the rules (pure); null when nothing. */
export function throttleFor(
  group: string,
  results: readonly RecipientResult[],
  slowdownSeconds: number,
  now: number,
): Throttle | null {
  for (const result of results) {
    if (result.remoteHost === undefined || result.outcome === 'delivered') continue;
    const cls = result.class ?? classifyReply(result);
    for (const rule of THROTTLE_RULES) {
      if (rule.groups !== undefined && !rule.groups.includes(group)) continue;
      if (rule.class !== undefined && rule.class !== cls) continue;
      if (rule.pattern !== undefined && !rule.pattern.test(result.response)) continue;
      const seconds = rule.seconds ?? slowdownSeconds;
      return { action: rule.action, until: now + seconds * 1000, reply: result.response.slice(0, 200) };
    }
  }
  return null;
}

/** A message rate as a sliding-window rule: 100/s is 100 per second, 1/60 one per minute. */
export function rateWindow(messagesPerSecond: number): { limit: number; windowMs: number } {
  if (messagesPerSecond >= 1) return { limit: Math.floor(messagesPerSecond), windowMs: 1000 };
  return { limit: 1, windowMs: Math.ceil(1000 / messagesPerSecond) };
}

export class Shaper {
  readonly #store: ShaperOptions['store'];
  readonly #config: () => ShapingConfig;
  readonly #instance: string;
  readonly #now: () => number;
  readonly #logger: ShaperLogger;
  readonly #observer: ShapingObserver | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  /** Waiters of this relay by group, woken when this relay gives a slot back. */
  readonly #wakers = new Map<string, Set<() => void>>();
  #seq = 0;

  constructor(options: ShaperOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#instance = options.instance;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.#observer = options.observer;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()));
  }

  get enabled(): boolean {
    return this.#config().enabled;
  }

  limitsFor(mxHosts: readonly string[]): GroupLimits {
    return groupOf(mxHosts, this.#config());
  }

  /**
   * The group's limits as they are now on all relays, after waiting for a message slot;
   * or the failure that defers the job (the group is suspended, or no slot came in time).
   */
  async admit(base: GroupLimits): Promise<GroupLimits | Failure> {
    const throttle = await this.#throttle(base.group);
    const limits = effectiveLimits(base, throttle);
    this.#observer?.state(limits, throttle);
    if (throttle?.action === 'suspend') {
      this.#observer?.deferred(base.group, 'suspended');
      return local(
        'deferred',
        '4.7.0',
        `delivery to ${base.group} is suspended until ${new Date(throttle.until).toISOString()} after it answered: ${throttle.reply}`,
        'shaping',
      );
    }
    const { limit, windowMs } = rateWindow(limits.messagesPerSecond);
    const got = await this.#waitFor(base.group, 'rate', async () => {
      const decision = await this.#store.consume(
        [{ key: `shaping:rate:${base.group}`, cost: 1, limit, windowMs }],
        this.#now(),
      );
      return decision.allowed ? true : undefined;
    });
    if (got === undefined) {
      this.#observer?.deferred(base.group, 'rate');
      return local(
        'deferred',
        '4.4.5',
        `the message rate to ${base.group} (${limits.messagesPerSecond}/s for all relays) left no room in ${this.#config().maxWaitSeconds} s`,
        'shaping',
      );
    }
    return limits;
  }

  /** A connection slot of the group on all relays, or the failure that defers the job. */
  async connection(limits: GroupLimits): Promise<(() => void) | Failure> {
    const perMinute = await this.#waitFor(limits.group, 'connection_rate', async () => {
      const rule = {
        key: `shaping:connrate:${limits.group}`,
        cost: 1,
        limit: limits.connectionsPerMinute,
        windowMs: 60_000,
      };
      return (await this.#store.consume([rule], this.#now())).allowed ? true : undefined;
    });
    if (perMinute === undefined) {
      this.#observer?.deferred(limits.group, 'connection_rate');
      return local(
        'deferred',
        '4.4.5',
        `the new connections to ${limits.group} (${limits.connectionsPerMinute} a minute for all relays) left no room in ${this.#config().maxWaitSeconds} s`,
        'shaping',
      );
    }
    const slotId = `${this.#instance}:${++this.#seq}`;
    const key = `shaping:conn:${limits.group}`;
    const got = await this.#waitFor(limits.group, 'connections', async () =>
      (await this.#store.acquireSlot(key, slotId, limits.connections, SLOT_TTL_MS, this.#now()))
        ? true
        : undefined,
    );
    if (got === undefined) {
      this.#observer?.deferred(limits.group, 'connections');
      return local(
        'deferred',
        '4.4.5',
        `the connection limit of ${limits.group} (${limits.connections} for all relays) left no room in ${this.#config().maxWaitSeconds} s`,
        'shaping',
      );
    }
    this.#observer?.connectionsChanged(limits.group, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#observer?.connectionsChanged(limits.group, -1);
      this.#store
        .releaseSlot(key, slotId)
        .then(() => this.#wake(limits.group))
        .catch((err: unknown) => {
          // the slot expires on its own (SLOT_TTL_MS)
          this.#logger.warn(
            {
              event: 'shaping_release_failed',
              group: limits.group,
              err: err instanceof Error ? err.message : String(err),
            },
            'cannot release a shared connection slot',
          );
        });
    };
  }

  /** Slows down or suspends the group on every relay when the results say so. */
  async observe(limits: GroupLimits, results: readonly RecipientResult[]): Promise<void> {
    const now = this.#now();
    const throttle = throttleFor(limits.group, results, this.#config().slowdownSeconds, now);
    if (throttle === null) return;
    const current = await this.#throttle(limits.group);
    // a suspension is not cut short by a slowdown that comes after it
    if (current?.action === 'suspend' && throttle.action === 'slow' && current.until > now) return;
    await this.#store.setCache(
      `shaping:throttle:${limits.group}`,
      JSON.stringify(throttle),
      throttle.until - now,
    );
    this.#observer?.throttled(limits.group, throttle.action);
    this.#observer?.state(effectiveLimits(limits, throttle), throttle);
    this.#logger.warn(
      {
        event: 'shaping_throttled',
        group: limits.group,
        action: throttle.action,
        until: new Date(throttle.until).toISOString(),
        reply: throttle.reply,
      },
      `${limits.group} throttles this relay: ${throttle.action === 'slow' ? 'slowed down' : 'suspended'} on every relay`,
    );
  }

  async #throttle(group: string): Promise<Throttle | null> {
    const raw = await this.#store.getCache(`shaping:throttle:${group}`);
    if (raw === null) return null;
    try {
      const parsed = JSON.parse(raw) as Throttle;
      return parsed.until > this.#now() ? parsed : null;
    } catch {
      return null;
    }
  }

  /** Tries until `attempt` gives a value or maxWaitSeconds have passed (wall clock). */
  async #waitFor<T>(
    group: string,
    limit: Limit,
    attempt: () => Promise<T | undefined>,
  ): Promise<T | undefined> {
    const deadline = Date.now() + this.#config().maxWaitSeconds * 1000;
    let backoff = FIRST_BACKOFF_MS;
    let waited = false;
    for (;;) {
      const value = await attempt();
      if (value !== undefined) return value;
      if (!waited) this.#observer?.waited(group, limit);
      waited = true;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      // a slot this relay gives back ends the wait at once; other relays' are polled for
      await this.#nap(group, Math.min(backoff, left));
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  }

  #nap(group: string, ms: number): Promise<void> {
    const wakers = this.#wakers.get(group) ?? new Set<() => void>();
    this.#wakers.set(group, wakers);
    let wake: () => void = () => undefined;
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    wakers.add(wake);
    return Promise.race([this.#sleep(ms), woken]).finally(() => {
      wakers.delete(wake);
      if (wakers.size === 0) this.#wakers.delete(group);
    });
  }

  #wake(group: string): void {
    for (const wake of this.#wakers.get(group) ?? []) wake();
  }
}
