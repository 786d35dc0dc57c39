// What the own-IP watch knows: per zone, per egress address, listed (with the code),
// clear, or unknown this round (the zone failed or answered with an error). Pure: the
// watch does the lookups; this decides what changed and what to show.

/** `stale`: this round could not tell (why), so the status is the last known one. */
export type IpStatus =
  | { kind: 'listed'; code: string; stale?: string }
  | { kind: 'clear'; stale?: string }
  | { kind: 'unknown'; why: string };

/** zone → ip → status */
export type Listing = ReadonlyMap<string, ReadonlyMap<string, IpStatus>>;

export interface ListingChange {
  zone: string;
  ip: string;
  listed: boolean;
  code?: string;
}

/**
 * The next listing: a round's answers, where an unknown answer keeps the last known one
 * (a zone that times out once does not clear or raise anything).
 */
export function mergeListing(previous: Listing, round: Listing): Map<string, Map<string, IpStatus>> {
  const out = new Map<string, Map<string, IpStatus>>();
  for (const [zone, ips] of round) {
    const zoneOut = new Map<string, IpStatus>();
    for (const [ip, status] of ips) {
      const before = previous.get(zone)?.get(ip);
      const known = status.kind === 'unknown' && before && before.kind !== 'unknown';
      zoneOut.set(ip, known ? { ...before, stale: status.why } : status);
    }
    out.set(zone, zoneOut);
  }
  return out;
}

/** Addresses that became listed or clear. A first answer of clear is no change; a first listing is. */
export function listingChanges(previous: Listing, next: Listing): ListingChange[] {
  const changes: ListingChange[] = [];
  for (const [zone, ips] of next) {
    for (const [ip, status] of ips) {
      const before = previous.get(zone)?.get(ip);
      const wasListed = before?.kind === 'listed';
      if (status.kind === 'listed' && (!wasListed || before.code !== status.code)) {
        changes.push({ zone, ip, listed: true, code: status.code });
      } else if (status.kind === 'clear' && wasListed) {
        changes.push({ zone, ip, listed: false });
      }
    }
  }
  return changes;
}

/** 1 when an address is listed in the zone, 0 when all are known clear, undefined when some are unknown. */
export function zoneListed(listing: Listing, zone: string): boolean | undefined {
  const statuses = [...(listing.get(zone)?.values() ?? [])];
  if (statuses.some((s) => s.kind === 'listed')) return true;
  if (statuses.length > 0 && statuses.every((s) => s.kind === 'clear')) return false;
  return undefined;
}

/** One line for /readyz: what is listed where, else how many addresses are clear. */
export function describeListing(listing: Listing, ips: readonly string[]): string {
  if (ips.length === 0) return 'not configured (ownIpWatch.ips is empty)';
  if (listing.size === 0) return `${ips.length} address(es) not checked yet`;
  const listed: string[] = [];
  const unknown: string[] = [];
  for (const [zone, statuses] of listing) {
    for (const [ip, s] of statuses) {
      if (s.kind === 'listed') {
        listed.push(`${ip} listed in ${zone} (${s.code})${s.stale ? ` as last seen, now: ${s.stale}` : ''}`);
      }
      if (s.kind === 'unknown') unknown.push(`${ip} in ${zone}: ${s.why}`);
      if (s.kind === 'clear' && s.stale) unknown.push(`${ip} in ${zone}: ${s.stale}`);
    }
  }
  const parts = listed.length > 0 ? listed : [`${ips.length} address(es) clear in ${listing.size} zone(s)`];
  if (unknown.length > 0) parts.push(`unknown: ${unknown.join(', ')}`);
  return parts.join('; ');
}
