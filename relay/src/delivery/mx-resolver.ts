// Where mail for a domain goes: its MX hosts by preference, the domain itself when it has no
// MX (RFC 5321 5.1), or a definite "nowhere" (null MX, RFC 7505; NXDOMAIN). Also the
// callback-style resolver mx-connect takes, so that every lookup of a delivery goes to
// the configured servers. Never throws: failures come back as values.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

export interface MxHost {
  exchange: string;
  priority: number;
}

export type MxAnswer =
  /** Hosts in the order to try them: by priority, equal priorities shuffled (RFC 5321 5.1). */
  | { kind: 'hosts'; hosts: MxHost[] }
  /** The domain says it accepts no mail (a single MX "."): bounce with 5.1.10. */
  | { kind: 'null-mx' }
  /** The domain does not exist, or exists without MX and address records: bounce with 5.1.2. */
  | { kind: 'no-domain' }
  /** SERVFAIL, timeout, refused: try again later (4.4.3). */
  | { kind: 'temporary'; reason: string };

export type HostAddresses =
  | { kind: 'addresses'; addresses: string[] }
  /** SERVFAIL, timeout, refused with no address found: try again later (4.4.3). */
  | { kind: 'temporary'; reason: string };

type DnsCallback = (err: NodeJS.ErrnoException | null, records?: unknown[]) => void;

/** mx-connect calls `resolve(name, type, cb)`, and `resolve(name, cb)` for A records. */
export type CallbackResolve = (
  name: string,
  typeOrCallback: string | DnsCallback,
  callback?: DnsCallback,
) => void;

export interface MxResolverOptions {
  /** 'ip', 'ip:port' or '[ipv6]:port'; empty uses the system resolver's servers. */
  servers: readonly string[];
  /** Longest one lookup may take. */
  timeoutMs: number;
}

const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);
const ADDRESS_LITERAL = /^\[(?:ipv6:)?([^\]]+)\]$/i;

export class MxResolver {
  readonly #resolver: Resolver;
  readonly #timeoutMs: number;

  constructor(options: MxResolverOptions) {
    if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
      throw new RangeError('timeoutMs must be > 0');
    }
    this.#timeoutMs = options.timeoutMs;
    this.#resolver = new Resolver({ timeout: options.timeoutMs, tries: 1 });
    if (options.servers.length > 0) this.#resolver.setServers([...options.servers]);
  }

  /** Looks up where mail for `domain` goes. */
  async resolve(domain: string): Promise<MxAnswer> {
    const literal = ADDRESS_LITERAL.exec(domain)?.[1];
    if (literal !== undefined) {
      // user@[192.0.2.1]: no lookup, the address is the host (RFC 5321 4.1.3)
      return isIP(literal)
        ? { kind: 'hosts', hosts: [{ exchange: literal, priority: 0 }] }
        : { kind: 'no-domain' };
    }
    const name = domainToASCII(domain.replace(/\.$/, ''));
    if (name === '') return { kind: 'no-domain' };
    try {
      const records = (await this.#query(name, 'MX')).filter(isMxRecord);
      return records.length > 0 ? fromMxRecords(records) : this.#implicitMx(name);
    } catch (err: unknown) {
      const code = errorCode(err);
      if (code === 'ENOTFOUND') return { kind: 'no-domain' };
      if (code === 'ENODATA') return this.#implicitMx(name);
      return { kind: 'temporary', reason: describe(code, name, 'MX') };
    }
  }

  /**
   * The addresses of one MX host (A and AAAA); a host that is an IP address is its own.
   * 'temporary' when a lookup failed and none found an address.
   */
  async addresses(host: string): Promise<HostAddresses> {
    if (isIP(host) !== 0) return { kind: 'addresses', addresses: [host] };
    const name = domainToASCII(host.replace(/\.$/, ''));
    if (name === '') return { kind: 'addresses', addresses: [] };
    const answers = await Promise.allSettled([this.#query(name, 'A'), this.#query(name, 'AAAA')]);
    const addresses = answers.flatMap((r) =>
      r.status === 'fulfilled' ? r.value.filter((a): a is string => typeof a === 'string') : [],
    );
    if (addresses.length > 0) return { kind: 'addresses', addresses };
    for (const r of answers) {
      if (r.status === 'rejected' && !NOT_FOUND.has(errorCode(r.reason) ?? '')) {
        return { kind: 'temporary', reason: describe(errorCode(r.reason), name, 'A/AAAA') };
      }
    }
    return { kind: 'addresses', addresses: [] };
  }

  /** The adapter for mx-connect's `dnsOptions.resolve`, bound to this resolver. */
  readonly callbackResolve: CallbackResolve = (name, typeOrCallback, callback) => {
    const type = typeof typeOrCallback === 'string' ? typeOrCallback : 'A';
    const done = typeof typeOrCallback === 'string' ? callback : typeOrCallback;
    if (done === undefined) throw new TypeError('resolve needs a callback');
    this.#query(name, type).then(
      (records) => done(null, records),
      (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
    );
  };

  /** No MX records but the name exists: the domain is its own MX if it has an address. */
  async #implicitMx(name: string): Promise<MxAnswer> {
    const [a, aaaa] = await Promise.allSettled([this.#query(name, 'A'), this.#query(name, 'AAAA')]);
    const found = [a, aaaa].some((r) => r.status === 'fulfilled' && r.value.length > 0);
    if (found) return { kind: 'hosts', hosts: [{ exchange: name, priority: 0 }] };
    for (const r of [a, aaaa]) {
      if (r.status === 'rejected' && !NOT_FOUND.has(errorCode(r.reason) ?? '')) {
        return { kind: 'temporary', reason: describe(errorCode(r.reason), name, 'A/AAAA') };
      }
    }
    return { kind: 'no-domain' };
  }

  /** One question, capped at timeoutMs whatever c-ares does with retries and servers. */
  async #query(name: string, type: string): Promise<unknown[]> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(Object.assign(new Error(`DNS ${type} query for ${name} timed out`), { code: 'ETIMEOUT' })),
        this.#timeoutMs,
      );
    });
    try {
      // resolve() is typed per record type; every caller here treats the answer as a list
      return (await Promise.race([this.#resolver.resolve(name, type), timedOut])) as unknown[];
    } finally {
      clearTimeout(timer);
    }
  }
}

function fromMxRecords(records: MxHost[]): MxAnswer {
  // RFC 7505: "." as exchange says no mail (node reports the root name as ''). A null MX
  // next to real ones is a misconfiguration; the real ones win.
  const real = records.filter((r) => r.exchange !== '' && r.exchange !== '.');
  if (real.length === 0) return { kind: 'null-mx' };
  const shuffled = real
    .map((r) => ({ exchange: r.exchange.replace(/\.$/, ''), priority: r.priority, tiebreak: Math.random() }))
    .sort((x, y) => x.priority - y.priority || x.tiebreak - y.tiebreak);
  return { kind: 'hosts', hosts: shuffled.map(({ exchange, priority }) => ({ exchange, priority })) };
}

function isMxRecord(value: unknown): value is MxHost {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as MxHost).exchange === 'string' &&
    typeof (value as MxHost).priority === 'number'
  );
}

function errorCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function describe(code: string | undefined, name: string, type: string): string {
  switch (code) {
    case 'ETIMEOUT':
      return `DNS ${type} lookup for ${name} timed out`;
    case 'ESERVFAIL':
      return `DNS ${type} lookup for ${name} failed (SERVFAIL)`;
    case 'EREFUSED':
    case 'ECONNREFUSED':
      return `DNS ${type} lookup for ${name} was refused`;
    default:
      return `DNS ${type} lookup for ${name} failed (${code ?? 'unknown error'})`;
  }
}
