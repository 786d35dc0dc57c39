// What a DNSBL's answer means for one zone. Pure: the checker does the DNS and the caching.
import type { DnsblZone } from '../config/schema.ts';

export type ZoneAnswer =
  | { kind: 'listed'; code: string }
  | { kind: 'clear' }
  | { kind: 'error'; code: string };

/** An inclusive range of IPv4 answers, as 32-bit numbers. */
export interface CodeRange {
  readonly first: number;
  readonly last: number;
}

// Spamhaus answers these instead of a listing when it refuses the query: 252 typo in the
// zone name, 254 query through a public/open resolver, 255 excessive query volume.
// Treating them as listings would reject every client, so they mean "this zone is broken".
const SPAMHAUS_ERRORS = new Set(['127.255.255.252', '127.255.255.254', '127.255.255.255']);
const LOOPBACK_FIRST = ipv4ToNumber('127.0.0.0') ?? 0;
const LOOPBACK_LAST = ipv4ToNumber('127.255.255.255') ?? 0;

/** Parses 'a.b.c.d' and 'a.b.c.d-e.f.g.h' entries once; throws RangeError on a malformed one. */
export function parseCodeRanges(codes: readonly string[]): CodeRange[] {
  return codes.map((entry) => {
    const [from = '', to = from, extra] = entry.split('-');
    const first = ipv4ToNumber(from.trim());
    const last = ipv4ToNumber(to.trim());
    if (extra !== undefined || first === undefined || last === undefined || first > last) {
      throw new RangeError(`DNSBL return code ${JSON.stringify(entry)} is not an address or a range a-b`);
    }
    return { first, last };
  });
}

/**
 * Classifies the A records of one lookup. An error answer (a Spamhaus refusal code, or any
 * address outside 127.0.0.0/8 per RFC 5782 §2.1) wins over everything and is never a listing;
 * then the first answer within the zone's listed codes; anything else is clear.
 * An empty list (NXDOMAIN) is clear.
 */
export function evaluateAnswers(
  addresses: readonly string[],
  zone: Pick<DnsblZone, 'listedCodes'>,
  ranges: readonly CodeRange[] = parseCodeRanges(zone.listedCodes),
): ZoneAnswer {
  const error = errorAnswer(addresses);
  if (error !== undefined) return { kind: 'error', code: error };
  for (const address of addresses) {
    const value = ipv4ToNumber(address) ?? -1;
    if (ranges.some((r) => value >= r.first && value <= r.last)) return { kind: 'listed', code: address };
  }
  return { kind: 'clear' };
}

/** The first answer that is an error whatever the zone's filter, if any. */
export function errorAnswer(addresses: readonly string[]): string | undefined {
  return addresses.find((address) => {
    const value = ipv4ToNumber(address);
    return (
      SPAMHAUS_ERRORS.has(address) || value === undefined || value < LOOPBACK_FIRST || value > LOOPBACK_LAST
    );
  });
}

function ipv4ToNumber(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}
