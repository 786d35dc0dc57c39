// Own-IP blacklist watch: every intervalSeconds the relay looks its own egress addresses
// up in the DNSBL zones, so the provider learns it is listed before its customers' mail
// bounces. It reuses the DNSBL checker with both cache tiers bypassed (a store that keeps
// nothing, TTLs of 0) and a fresh checker per round, so every round asks DNS and a zone
// switched off by an error answer is tried again the next round.
import type { RelayConfig } from '../config/schema.ts';
import { DnsblChecker, type DnsblLookupOutcome } from '../dnsbl/checker.ts';
import { DnsblResolver } from '../dnsbl/resolver.ts';
import {
  describeListing,
  type IpStatus,
  type Listing,
  listingChanges,
  mergeListing,
  zoneListed,
} from './listing.ts';

export interface OwnIpObserver {
  checked(zone: string, result: string): void;
  zoneListed(zone: string, listed: boolean): void;
  forgetZone(zone: string): void;
}

export interface OwnIpLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface OwnIpWatchOptions {
  config: () => RelayConfig;
  logger: OwnIpLogger;
  observer?: OwnIpObserver;
  /** The DNS lookups; by default the dnsbl resolvers of the config. */
  resolver?: ConstructorParameters<typeof DnsblChecker>[0]['resolver'];
}

const NO_CACHE = { getCache: async () => null, setCache: async () => undefined };

export class OwnIpWatch {
  readonly #o: OwnIpWatchOptions;
  #listing: Listing = new Map();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #running: Promise<Listing> | undefined;

  constructor(options: OwnIpWatchOptions) {
    this.#o = options;
  }

  get listing(): Listing {
    return this.#listing;
  }

  /** The /readyz detail. */
  get detail(): string {
    return describeListing(this.#listing, this.#o.config().ownIpWatch.ips);
  }

  /** Checks now, then every intervalSeconds (read anew each round). Off while ips is empty. */
  start(): void {
    if (this.#closed || this.#timer) return;
    if (this.#o.config().ownIpWatch.ips.length > 0) void this.checkNow();
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One round over every address and zone; concurrent calls share it. */
  checkNow(): Promise<Listing> {
    this.#running ??= this.#round().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      const run = this.#o.config().ownIpWatch.ips.length > 0 ? this.checkNow() : Promise.resolve();
      void run.finally(() => this.#schedule());
    }, this.#o.config().ownIpWatch.intervalSeconds * 1000);
    this.#timer.unref();
  }

  async #round(): Promise<Listing> {
    const config = this.#o.config();
    const { ips } = config.ownIpWatch;
    const zones = config.ownIpWatch.zones ?? config.dnsbl.zones;
    // The checker reports each zone's result to its observer; addresses are checked one
    // after another so every report belongs to the address being checked.
    let results = new Map<string, DnsblLookupOutcome>();
    const checker = new DnsblChecker({
      zones,
      resolver:
        this.#o.resolver ??
        new DnsblResolver({ servers: config.dnsbl.resolvers, timeoutMs: config.dnsbl.timeoutMs }),
      store: NO_CACHE,
      minTtlSeconds: 0,
      maxTtlSeconds: 0,
      errorBackoffSeconds: Math.max(1, config.ownIpWatch.intervalSeconds),
      logger: this.#o.logger,
      observer: { lookup: (zone, result) => results.set(zone, result), zoneDisabled: () => undefined },
    });
    const round = new Map<string, Map<string, IpStatus>>(zones.map((z) => [z.zone, new Map()]));
    for (const ip of ips) {
      results = new Map();
      const verdict = await checker.check(ip).catch(() => undefined);
      for (const zone of zones) {
        const hit = verdict?.listed.find((h) => h.zone === zone.zone);
        const result = verdict === undefined ? 'failure' : (results.get(zone.zone) ?? 'failure');
        this.#o.observer?.checked(zone.zone, result);
        round.get(zone.zone)?.set(ip, hit ? { kind: 'listed', code: hit.code } : statusOf(result));
      }
    }
    return this.#apply(round, ips);
  }

  #apply(round: Listing, ips: readonly string[]): Listing {
    const next = mergeListing(this.#listing, round);
    for (const change of listingChanges(this.#listing, next)) {
      if (change.listed) {
        this.#o.logger.warn(
          { event: 'own_ip_listed', ip: change.ip, zone: change.zone, code: change.code },
          'an egress address of this relay is listed in a DNSBL',
        );
      } else {
        this.#o.logger.info(
          { event: 'own_ip_delisted', ip: change.ip, zone: change.zone },
          'an egress address of this relay is no longer listed',
        );
      }
    }
    for (const zone of this.#listing.keys()) if (!next.has(zone)) this.#o.observer?.forgetZone(zone);
    for (const zone of next.keys()) {
      const listed = zoneListed(next, zone);
      if (listed !== undefined) this.#o.observer?.zoneListed(zone, listed);
    }
    this.#listing = ips.length === 0 ? new Map() : next;
    return this.#listing;
  }
}

function statusOf(result: DnsblLookupOutcome): IpStatus {
  switch (result) {
    case 'clear':
      return { kind: 'clear' };
    case 'listed':
      // listed by the filter yet not in the verdict cannot happen; treat it as unknown
      return { kind: 'unknown', why: 'inconsistent answer' };
    case 'error':
      return { kind: 'unknown', why: 'the zone answered with an error code' };
    case 'skipped':
      return { kind: 'unknown', why: 'the zone is switched off after an error code' };
    case 'failure':
      return { kind: 'unknown', why: 'the lookup failed' };
  }
}
