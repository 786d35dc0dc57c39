// DMARC pre-check (RFC 7489) of accepted mail, before the 250: will the receiver see a
// DMARC pass for the header From domain? The relay knows both halves in advance: the DKIM
// signature it will add (its d= is the key's domain) and, for SPF, the MAIL FROM domain and
// the addresses its mail leaves from. mailauth reads the DMARC record (with the
// organizational-domain fallback) and judges alignment; mailauth's SPF evaluates the MAIL
// FROM domain's record for each egress address. Lookups are asynchronous: nothing here
// blocks the event loop. A DNS failure never refuses mail: the outcome is dns_error.
import { Resolver } from 'node:dns/promises';
import { dmarc } from 'mailauth/lib/dmarc/index.js';
import { spf } from 'mailauth/lib/spf/index.js';

export type DnsResolve = (name: string, type: string) => Promise<string[][] | string[]>;

export type DmarcPrecheckOutcome =
  /** No DMARC record, or one that asks receivers for nothing (p=none). */
  | { result: 'no_policy'; domain: string }
  | { result: 'aligned_dkim'; domain: string; policy: string }
  | { result: 'aligned_spf'; domain: string; policy: string }
  /** p=quarantine or p=reject, and neither the relay's signature nor SPF can align. */
  | { result: 'would_fail'; domain: string; policy: string; why: string; fix: string }
  /** A lookup timed out or failed: the mail is accepted (a DNS fault must not refuse mail). */
  | { result: 'dns_error'; domain: string; detail: string };

export interface DmarcPrecheckInput {
  /** The header From domain. */
  fromDomain: string;
  /** MAIL FROM ('' for the null sender). */
  envelopeSender: string;
  /** d= of the signatures the relay will add to this message. */
  signingDomains: readonly string[];
  /** Addresses receivers see the relay's mail come from. */
  egressIps: readonly string[];
  /** The relay's name, for SPF's HELO and macros. */
  hostname: string;
  resolve: DnsResolve;
}

/** A resolver on the given servers (system servers when empty), one try per query. */
export function dnsResolve(servers: readonly string[], timeoutMs: number): DnsResolve {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (servers.length > 0) resolver.setServers([...servers]);
  return (name, type) => resolver.resolve(name, type) as Promise<string[][] | string[]>;
}

const ENFORCING = new Set(['quarantine', 'reject']);

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** Whether a strict (adkim=s or aspf=s) alignment holds: the very same domain. */
function strictlyAligned(fromDomain: string, domain: string | undefined): boolean {
  return domain !== undefined && domain.toLowerCase() === fromDomain.toLowerCase();
}

export async function dmarcPrecheck(input: DmarcPrecheckInput): Promise<DmarcPrecheckOutcome> {
  const domain = input.fromDomain.toLowerCase();
  const envelopeDomain = domainOf(input.envelopeSender);
  // one DMARC lookup, the MAIL FROM domain assumed to pass SPF: SPF is evaluated only when
  // it is what would align
  const verdict = await dmarc({
    headerFrom: domain,
    dkimDomains: input.signingDomains.map((d) => ({ domain: d })),
    spfDomains: envelopeDomain ? [envelopeDomain] : [],
    resolver: input.resolve,
  });
  if (!verdict || verdict.status.result === 'none') return { result: 'no_policy', domain };
  if (verdict.status.result === 'temperror') {
    return {
      result: 'dns_error',
      domain,
      detail: `DMARC record of ${domain}: ${verdict.error ?? 'lookup failed'}`,
    };
  }
  const policy = String(verdict.policy ?? 'none').toLowerCase();
  if (!ENFORCING.has(policy)) return { result: 'no_policy', domain };
  const dkim = verdict.alignment.dkim;
  if (dkim.result && (!dkim.strict || input.signingDomains.some((d) => strictlyAligned(domain, d)))) {
    return { result: 'aligned_dkim', domain, policy };
  }
  const unsigned = input.signingDomains.length
    ? `signed for ${input.signingDomains.join(', ')}, which is not aligned with ${domain}`
    : `the relay has no DKIM key for ${domain}`;
  // the classic case is someone@gmail.com from a scanner: the customer cannot publish
  // anything for that domain, only send as one of their own
  const fix = `send as an address of a domain set up with this relay (its DKIM key published in DNS)`;
  const spfAligned =
    verdict.alignment.spf.result &&
    (!verdict.alignment.spf.strict || strictlyAligned(domain, envelopeDomain));
  if (!spfAligned) {
    const envelope = envelopeDomain
      ? `MAIL FROM domain ${envelopeDomain} is not aligned`
      : 'MAIL FROM is empty';
    return { result: 'would_fail', domain, policy, why: `${unsigned}; ${envelope}`, fix };
  }
  if (input.egressIps.length === 0) {
    return {
      result: 'would_fail',
      domain,
      policy,
      why: `${unsigned}; SPF cannot be checked, as the relay's egress addresses are not configured`,
      fix,
    };
  }
  for (const ip of input.egressIps) {
    const result = await spf({
      sender: input.envelopeSender,
      ip,
      helo: input.hostname,
      mta: input.hostname,
      resolver: input.resolve,
    });
    const spfResult = result.status.result;
    if (spfResult === 'temperror') {
      return { result: 'dns_error', domain, detail: `SPF record of ${envelopeDomain}: temporary error` };
    }
    if (spfResult !== 'pass') {
      return {
        result: 'would_fail',
        domain,
        policy,
        why: `${unsigned}; SPF of ${envelopeDomain} gives ${spfResult} for the relay's address ${ip}`,
        fix: `${fix}, or authorize the relay in the SPF record of ${envelopeDomain}`,
      };
    }
  }
  return { result: 'aligned_spf', domain, policy };
}

/** Where DNS answers are shared: the state store (Redis: every pod; memory: this process). */
export interface AnswerCache {
  getCache(key: string): Promise<string | null>;
  setCache(key: string, value: string, ttlMs: number): Promise<void>;
}

const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * `resolve` with its answers, and its "no such record" answers, kept in `cache` for
 * `ttlMs`, so that one query serves every pod. Node's resolver gives no TTL for TXT
 * records, hence the fixed time. A failure (timeout, SERVFAIL) is never kept, and a cache
 * that cannot be reached only costs the query.
 */
export function cachedResolve(resolve: DnsResolve, cache: AnswerCache, ttlMs: number): DnsResolve {
  return async (name, type) => {
    const key = `dns:${type}:${name.toLowerCase()}`;
    const kept = await cache.getCache(key).catch(() => null);
    if (kept !== null) {
      const entry = JSON.parse(kept) as { answer?: string[][] | string[]; code?: string };
      if (entry.answer) return entry.answer;
      throw Object.assign(new Error(`${type} ${name}: ${entry.code}`), { code: entry.code });
    }
    try {
      const answer = await resolve(name, type);
      await cache.setCache(key, JSON.stringify({ answer }), ttlMs).catch(() => undefined);
      return answer;
    } catch (err: unknown) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== undefined && NO_RECORDS.has(code)) {
        await cache.setCache(key, JSON.stringify({ code }), ttlMs).catch(() => undefined);
      }
      throw err;
    }
  };
}
