// The one DNS question a DNSBL check asks (A records of a name), reduced to the outcomes the
// checker cares about. Never throws: every failure comes back as a value.
import { Resolver } from 'node:dns/promises';

export type DnsFailureReason = 'timeout' | 'servfail' | 'refused' | 'error';

export type DnsblLookupResult =
  | { kind: 'answer'; addresses: string[]; ttlSeconds: number }
  /** The name does not exist (or has no A record); ttlSeconds when the resolver knows it. */
  | { kind: 'nxdomain'; ttlSeconds?: number }
  | { kind: 'failure'; reason: DnsFailureReason };

export interface DnsblResolverOptions {
  /** 'ip', 'ip:port' or '[ipv6]:port'; empty uses the system resolver. */
  servers: readonly string[];
  /** Longest a lookup may take, whatever the underlying resolver does. */
  timeoutMs: number;
}

export class DnsblResolver {
  readonly #resolver: Resolver;
  readonly #timeoutMs: number;

  constructor(options: DnsblResolverOptions) {
    const { servers, timeoutMs } = options;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('timeoutMs must be > 0');
    this.#timeoutMs = timeoutMs;
    this.#resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
    if (servers.length > 0) this.#resolver.setServers([...servers]);
  }

  /** Asks for the A records of `name`. */
  async lookup(name: string): Promise<DnsblLookupResult> {
    // c-ares applies its timeout per try and per server (and may back off), so one lookup can
    // take several times timeoutMs; the timer caps it. The abandoned query settles on its own
    // and #query never rejects, so nothing leaks as an unhandled rejection.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<DnsblLookupResult>((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'failure', reason: 'timeout' }), this.#timeoutMs);
    });
    try {
      return await Promise.race([this.#query(name), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #query(name: string): Promise<DnsblLookupResult> {
    try {
      const records = await this.#resolver.resolve4(name, { ttl: true });
      if (records.length === 0) return { kind: 'nxdomain' };
      return {
        kind: 'answer',
        addresses: records.map((r) => r.address),
        ttlSeconds: Math.min(...records.map((r) => r.ttl)),
      };
    } catch (err: unknown) {
      return classify(err);
    }
  }
}

function classify(err: unknown): DnsblLookupResult {
  const code = err instanceof Error && 'code' in err ? err.code : undefined;
  switch (code) {
    case 'ENOTFOUND':
    case 'ENODATA':
      // c-ares does not hand over the SOA, so the negative-caching TTL is unknown here.
      return { kind: 'nxdomain' };
    case 'ETIMEOUT':
      return { kind: 'failure', reason: 'timeout' };
    case 'ESERVFAIL':
      return { kind: 'failure', reason: 'servfail' };
    case 'ECONNREFUSED':
    case 'EREFUSED':
      return { kind: 'failure', reason: 'refused' };
    default:
      return { kind: 'failure', reason: 'error' };
  }
}
