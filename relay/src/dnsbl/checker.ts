// Checks a client IP against every configured DNSBL zone at once. Answers are cached in two
// tiers, a bounded in-process LRU in front of the shared state store, so a busy cluster asks
// each list about each address about once per TTL. Lookups of the same (zone, ip) in flight
// in this process are joined. A zone that answers with an error code (it refuses to serve us)
// is switched off for a while instead of rejecting or tempfailing every client.
import { LRUCache } from 'lru-cache';
import type { DnsblZone, RelayConfig } from '../config/schema.ts';
import type { StateStore } from '../state/store.ts';
import {
  type CodeRange,
  errorAnswer,
  evaluateAnswers,
  parseCodeRanges,
  type ZoneAnswer,
} from './evaluate.ts';
import { dnsblQueryName, unmapIpv4 } from './query-name.ts';
import { DnsblResolver, type DnsFailureReason } from './resolver.ts';

export interface DnsblHit {
  zone: string;
  code: string;
  action: 'reject' | 'tag';
  /** The zone's reply text with {ip}, {zone} and {url} filled in. */
  message: string;
}

export interface DnsblVerdict {
  /** Zones that list the IP, in configuration order. */
  listed: DnsblHit[];
  /** Zones that could not answer this time (not cached; the caller applies onError). */
  failed: Array<{ zone: string; reason: DnsFailureReason }>;
}

export type DnsblLookupOutcome = 'listed' | 'clear' | 'error' | 'failure' | 'skipped';
export type DnsblCacheTier = 'local' | 'shared' | 'dns';

export interface DnsblObserver {
  /** One call per zone per check: what it said, where the answer came from, how long it took. */
  lookup(zone: string, result: DnsblLookupOutcome, tier: DnsblCacheTier, seconds: number): void;
  /** A zone answered with an error code and is skipped for errorBackoffSeconds. */
  zoneDisabled(zone: string, code: string): void;
}

export interface DnsblLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface DnsblCheckerOptions {
  zones: readonly DnsblZone[];
  resolver: Pick<DnsblResolver, 'lookup'>;
  store: Pick<StateStore, 'getCache' | 'setCache'>;
  minTtlSeconds: number;
  maxTtlSeconds: number;
  errorBackoffSeconds: number;
  /** Wall-clock milliseconds (expiry times are shared between pods); tests inject their own. */
  now?: () => number;
  observer?: DnsblObserver;
  logger: DnsblLogger;
  /** Most answers remembered in this process; the least recently used go first. */
  localCacheSize?: number;
}

export const DEFAULT_LOCAL_CACHE_SIZE = 10_000;

/** A remembered answer: the A records (none for NXDOMAIN) and when they expire, epoch ms. */
interface CachedAnswer {
  addresses: string[];
  expiresAt: number;
}

/** What a lookup of one query name produced, before a zone's filter is applied. */
type RawOutcome =
  | { kind: 'answer'; addresses: string[]; tier: DnsblCacheTier }
  | { kind: 'failure'; reason: DnsFailureReason };

type ZoneOutcome =
  | { kind: 'answer'; answer: ZoneAnswer; tier: DnsblCacheTier }
  | { kind: 'failure'; reason: DnsFailureReason }
  | { kind: 'skipped' };

interface CompiledZone {
  config: DnsblZone;
  name: string;
  ranges: CodeRange[];
}

export class DnsblChecker {
  readonly #zones: CompiledZone[];
  readonly #resolver: Pick<DnsblResolver, 'lookup'>;
  readonly #store: Pick<StateStore, 'getCache' | 'setCache'>;
  readonly #minTtlMs: number;
  readonly #maxTtlMs: number;
  readonly #errorBackoffMs: number;
  readonly #now: () => number;
  readonly #observer: DnsblObserver | undefined;
  readonly #logger: DnsblLogger;
  // Expiry is checked here against the injected clock rather than by lru-cache's own TTL,
  // which runs on performance.now() and would not see a test's clock nor a shared expiry.
  readonly #local: LRUCache<string, CachedAnswer>;
  readonly #inFlight = new Map<string, Promise<RawOutcome>>();
  /** Zone name → when it is used again, epoch ms. */
  readonly #disabledUntil = new Map<string, number>();

  constructor(options: DnsblCheckerOptions) {
    const {
      minTtlSeconds,
      maxTtlSeconds,
      errorBackoffSeconds,
      localCacheSize = DEFAULT_LOCAL_CACHE_SIZE,
    } = options;
    if (!(minTtlSeconds >= 0)) throw new RangeError('minTtlSeconds must be >= 0');
    if (!(maxTtlSeconds >= minTtlSeconds)) throw new RangeError('maxTtlSeconds must be >= minTtlSeconds');
    if (!(errorBackoffSeconds > 0)) throw new RangeError('errorBackoffSeconds must be > 0');
    if (!Number.isSafeInteger(localCacheSize) || localCacheSize < 1) {
      throw new RangeError('localCacheSize must be >= 1');
    }
    // Parsing the return-code filters here fails a bad config at start, not on the first client.
    this.#zones = options.zones.map((config) => ({
      config,
      name: config.zone.toLowerCase().replace(/^\.+|\.+$/g, ''),
      ranges: parseCodeRanges(config.listedCodes),
    }));
    this.#resolver = options.resolver;
    this.#store = options.store;
    this.#minTtlMs = minTtlSeconds * 1000;
    this.#maxTtlMs = maxTtlSeconds * 1000;
    this.#errorBackoffMs = errorBackoffSeconds * 1000;
    this.#now = options.now ?? Date.now;
    this.#observer = options.observer;
    this.#logger = options.logger;
    this.#local = new LRUCache<string, CachedAnswer>({ max: localCacheSize });
  }

  /** Looks `ip` up in every zone in parallel. Rejects only when `ip` is not an IP address. */
  async check(ip: string): Promise<DnsblVerdict> {
    const queries = this.#zones.map((zone) => ({ zone, name: dnsblQueryName(ip, zone.name) }));
    const outcomes = await Promise.all(
      queries.map(async ({ zone, name }) => ({ zone, outcome: await this.#observed(zone, name) })),
    );
    const verdict: DnsblVerdict = { listed: [], failed: [] };
    const shownIp = unmapIpv4(ip);
    for (const { zone, outcome } of outcomes) {
      if (outcome.kind === 'failure') verdict.failed.push({ zone: zone.config.zone, reason: outcome.reason });
      if (outcome.kind === 'answer' && outcome.answer.kind === 'listed') {
        verdict.listed.push({
          zone: zone.config.zone,
          code: outcome.answer.code,
          action: zone.config.action,
          message: replyMessage(zone.config, shownIp),
        });
      }
    }
    return verdict;
  }

  async #observed(zone: CompiledZone, queryName: string): Promise<ZoneOutcome> {
    const started = this.#now();
    const outcome = await this.#checkZone(zone, queryName);
    if (this.#observer !== undefined) {
      const seconds = Math.max(0, this.#now() - started) / 1000;
      const [result, tier]: [DnsblLookupOutcome, DnsblCacheTier] =
        outcome.kind === 'answer'
          ? [outcome.answer.kind, outcome.tier]
          : outcome.kind === 'failure'
            ? ['failure', 'dns']
            : ['skipped', 'local'];
      this.#observer.lookup(zone.config.zone, result, tier, seconds);
    }
    return outcome;
  }

  async #checkZone(zone: CompiledZone, queryName: string): Promise<ZoneOutcome> {
    if (this.#isDisabled(zone)) return { kind: 'skipped' };
    const key = cacheKey(queryName);
    const cached = this.#fresh(key);
    const raw: RawOutcome =
      cached !== undefined
        ? { kind: 'answer', addresses: cached.addresses, tier: 'local' }
        : await this.#joined(key, queryName);
    if (raw.kind === 'failure') return raw;
    const answer = evaluateAnswers(raw.addresses, zone.config, zone.ranges);
    if (answer.kind === 'error') this.#disable(zone, answer.code);
    return { kind: 'answer', answer, tier: raw.tier };
  }

  /** One lookup per key at a time in this process; later callers share the first one's result. */
  #joined(key: string, queryName: string): Promise<RawOutcome> {
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const run = this.#lookup(key, queryName).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, run);
    return run;
  }

  async #lookup(key: string, queryName: string): Promise<RawOutcome> {
    const shared = await this.#readShared(key);
    if (shared !== undefined) {
      this.#local.set(key, shared);
      return { kind: 'answer', addresses: shared.addresses, tier: 'shared' };
    }
    const result = await this.#resolver.lookup(queryName);
    if (result.kind === 'failure') return result;
    const addresses = result.kind === 'answer' ? result.addresses : [];
    // An error answer says nothing about this IP, so it is not remembered for it; the zone
    // is switched off instead (by the caller, which knows the zone).
    if (errorAnswer(addresses) === undefined) {
      const ttlMs = this.#clampTtl(result.ttlSeconds);
      if (ttlMs > 0) await this.#remember(key, { addresses, expiresAt: this.#now() + ttlMs }, ttlMs);
    }
    return { kind: 'answer', addresses, tier: 'dns' };
  }

  #clampTtl(ttlSeconds: number | undefined): number {
    // An NXDOMAIN of unknown TTL is kept for the minimum: listings appear at any time.
    if (ttlSeconds === undefined) return this.#minTtlMs;
    return Math.min(this.#maxTtlMs, Math.max(this.#minTtlMs, ttlSeconds * 1000));
  }

  #fresh(key: string): CachedAnswer | undefined {
    const entry = this.#local.get(key);
    if (entry === undefined) return undefined;
    if (this.#now() < entry.expiresAt) return entry;
    this.#local.delete(key);
    return undefined;
  }

  async #readShared(key: string): Promise<CachedAnswer | undefined> {
    let text: string | null;
    try {
      text = await this.#store.getCache(key);
    } catch {
      // The store reports its own outages (metrics, readiness); DNS still answers without it.
      return undefined;
    }
    const entry = text === null ? undefined : parseCached(text);
    // The stored expiry, not a fresh TTL: a pod that reads the answer late keeps it only as
    // long as the pod that asked DNS would have.
    return entry !== undefined && this.#now() < entry.expiresAt ? entry : undefined;
  }

  async #remember(key: string, entry: CachedAnswer, ttlMs: number): Promise<void> {
    this.#local.set(key, entry);
    try {
      await this.#store.setCache(key, JSON.stringify(entry), ttlMs);
    } catch {
      // Not shared this time; other pods ask DNS themselves. See #readShared.
    }
  }

  #isDisabled(zone: CompiledZone): boolean {
    const until = this.#disabledUntil.get(zone.name);
    if (until === undefined) return false;
    if (this.#now() < until) return true;
    this.#disabledUntil.delete(zone.name);
    this.#logger.info({ event: 'dnsbl_zone_enabled', zone: zone.config.zone }, 'DNSBL zone in use again');
    return false;
  }

  #disable(zone: CompiledZone, code: string): void {
    // Several lookups in flight can bring the same bad news; say it once.
    const now = this.#now();
    if ((this.#disabledUntil.get(zone.name) ?? 0) > now) return;
    const until = now + this.#errorBackoffMs;
    this.#disabledUntil.set(zone.name, until);
    this.#observer?.zoneDisabled(zone.config.zone, code);
    this.#logger.warn(
      { event: 'dnsbl_zone_disabled', zone: zone.config.zone, code, until: new Date(until).toISOString() },
      'DNSBL zone answered with an error code and is skipped until the backoff ends',
    );
  }
}

/** A checker for the relay's `dnsbl` config, querying the configured resolvers. */
export function createDnsblChecker(
  config: RelayConfig['dnsbl'],
  store: Pick<StateStore, 'getCache' | 'setCache'>,
  logger: DnsblLogger,
  observer?: DnsblObserver,
): DnsblChecker {
  return new DnsblChecker({
    zones: config.zones,
    resolver: new DnsblResolver({ servers: config.resolvers, timeoutMs: config.timeoutMs }),
    store,
    minTtlSeconds: config.minTtlSeconds,
    maxTtlSeconds: config.maxTtlSeconds,
    errorBackoffSeconds: config.errorBackoffSeconds,
    logger,
    ...(observer === undefined ? {} : { observer }),
  });
}

/** The zone's reply text: {ip}, {zone} and {url} (the lookup page for the IP, else the zone). */
export function replyMessage(zone: Pick<DnsblZone, 'zone' | 'message' | 'lookupUrl'>, ip: string): string {
  const url = zone.lookupUrl === undefined ? zone.zone : zone.lookupUrl.replaceAll('{ip}', () => ip);
  const values: Record<string, string> = { ip, zone: zone.zone, url };
  return zone.message.replace(/\{(ip|zone|url)\}/g, (_match, name: string) => values[name] ?? '');
}

// The query name already holds the zone and a canonical spelling of the IP (mapped IPv4 as
// IPv4, IPv6 fully expanded), so every pod derives the same key for the same (zone, ip).
function cacheKey(queryName: string): string {
  return `dnsbl:${queryName.toLowerCase()}`;
}

function parseCached(text: string): CachedAnswer | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null) return undefined;
    const { addresses, expiresAt } = value as Record<string, unknown>;
    if (!Array.isArray(addresses) || !addresses.every((a) => typeof a === 'string')) return undefined;
    if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt)) return undefined;
    return { addresses, expiresAt };
  } catch {
    return undefined; // written by something else; ask DNS
  }
}
