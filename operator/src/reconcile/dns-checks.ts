// What DNS says about a sending domain: whether a DKIM key is served, whether SPF lets
// the relays send, which DMARC policy is published. Through an injected resolver (tests
// point it at a DNS server on loopback). A lookup that fails (timeout, SERVFAIL) is
// `error`, never taken as "not published": a flaky resolver does not stop signing.
import { Resolver } from 'node:dns/promises';
import { spf } from 'mailauth';
import getDmarcRecord from 'mailauth/lib/dmarc/get-dmarc-record.js';
import tools from 'mailauth/lib/tools.js';
import { getDomain } from 'tldts';

/** What the checks ask of DNS: TXT records (each joined from its strings) and mailauth's resolve(). */
export interface DnsLookup {
  /** TXT records of a name; [] when it has none (NXDOMAIN, NODATA); throws when the lookup fails */
  txt(name: string): Promise<string[]>;
  resolve(name: string, type: string): Promise<unknown>;
}

const ABSENT = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'NODATA']);

/** A lookup through node's resolver; `servers` ('host:port') replace the system's. */
export function resolverLookup(servers?: readonly string[], timeoutMs = 5000): DnsLookup {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers?.length) resolver.setServers([...servers]);
  return {
    async txt(name) {
      try {
        return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
      } catch (err: unknown) {
        if (ABSENT.has((err as { code?: string }).code ?? '')) return [];
        throw err;
      }
    },
    resolve: (name, type) => resolver.resolve(name, type),
  };
}

export type Lookup<T> = { ok: true; value: T } | { ok: false; error: string };

async function attempt<T>(step: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { ok: true, value: await step() };
  } catch (err: unknown) {
    const e = err as { code?: string; message?: string };
    return { ok: false, error: e.code ?? e.message ?? String(err) };
  }
}

/** Tag=value pairs of a DKIM or DMARC record (RFC 6376 3.2), names lower-cased. */
export function tags(record: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of record.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    out.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).replace(/\s+/g, ''));
  }
  return out;
}

export type DkimAnswer = 'match' | 'mismatch' | 'missing';

/** Whether `name` serves a DKIM record with public key `p` (whitespace in p= is ignored). */
export async function checkDkim(dns: DnsLookup, name: string, p: string): Promise<Lookup<DkimAnswer>> {
  return attempt(async () => {
    const records = (await dns.txt(name)).map(tags).filter((t) => t.has('p'));
    if (records.length === 0) return 'missing';
    return records.some((t) => t.get('p') === p) ? 'match' : 'mismatch';
  });
}

export type SpfAnswer =
  | { result: 'authorized'; detail: string }
  | { result: 'missing' }
  | { result: 'notAuthorized'; detail: string };

/**
 * SPF of a domain against the relays: with their egress addresses, the record is
 * evaluated for each (mailauth); without, it must include the provider's SPF domain.
 */
export async function checkSpf(
  dns: DnsLookup,
  domain: string,
  relay: { include: string; addresses: readonly string[] },
): Promise<Lookup<SpfAnswer>> {
  return attempt(async (): Promise<SpfAnswer> => {
    const record = (await dns.txt(domain)).find((r) => /^v=spf1(\s|$)/i.test(r));
    if (!record) return { result: 'missing' };
    if (relay.addresses.length === 0) {
      const include = `include:${relay.include}`.toLowerCase();
      const found = record
        .toLowerCase()
        .split(/\s+/)
        .some((term) => term.replace(/^[+~?]/, '') === include);
      return found
        ? { result: 'authorized', detail: `the SPF record includes ${relay.include}` }
        : { result: 'notAuthorized', detail: `the SPF record does not include ${relay.include}` };
    }
    const refused: string[] = [];
    for (const ip of relay.addresses) {
      const answer = await spf({
        ip,
        sender: `postmaster@${domain}`,
        helo: domain,
        mta: 'sluice-operator',
        resolver: (name: string, type: string) => dns.resolve(name, type),
      } as Parameters<typeof spf>[0]);
      const result = answer.status.result;
      if (result === 'temperror') throw new Error(`SPF temporary error for ${ip}`);
      if (result !== 'pass') refused.push(`${ip} (${result})`);
    }
    return refused.length === 0
      ? { result: 'authorized', detail: `SPF passes for ${relay.addresses.join(', ')}` }
      : { result: 'notAuthorized', detail: `SPF does not pass for ${refused.join(', ')}` };
  });
}

export type DmarcAnswer =
  | { policy: 'none' | 'quarantine' | 'reject'; record: string; at: string }
  | { policy: 'missing' };

/**
 * The DMARC policy that applies to mail from `domain` (RFC 7489 6.6.3), by mailauth's own
 * lookup: the domain's record, else that of its organizational domain (public suffix list),
 * whose sp= (else p=) applies; more than one record counts as none.
 */
export async function checkDmarc(dns: DnsLookup, domain: string): Promise<Lookup<DmarcAnswer>> {
  return attempt(async (): Promise<DmarcAnswer> => {
    const record = await getDmarcRecord(domain, (name, type) => dns.resolve(name, type));
    if (!record) return { policy: 'missing' };
    const p = (record.isOrgRecord ? (record.sp ?? record.p) : record.p)?.toLowerCase();
    if (p !== 'none' && p !== 'quarantine' && p !== 'reject') return { policy: 'missing' };
    const at = record.isOrgRecord ? (getDomain(domain, tools.TLDTS_OPTS) ?? domain) : domain;
    return { policy: p, record: record.rr, at };
  });
}
