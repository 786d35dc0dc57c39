// What a DNSBL verdict means for the client at the stage that enforces it: zones with action
// tag only tag it, the first zone with action reject refuses it, and a zone that could not
// answer refuses it temporarily when dnsbl.onError is tempfail. Pure: the checker does the DNS.
import type { RelayConfig } from '../config/schema.ts';
import type { DnsblHit, DnsblVerdict } from '../dnsbl/checker.ts';

export type DnsblDecision =
  | { kind: 'pass' }
  | { kind: 'reject'; hit: DnsblHit }
  | { kind: 'tempfail'; failed: DnsblVerdict['failed'][number] };

/** The zones whose listing only tags the client (carried into the envelope). */
export function dnsblTags(verdict: DnsblVerdict): DnsblHit[] {
  return verdict.listed.filter((hit) => hit.action === 'tag');
}

export function decideDnsbl(
  verdict: DnsblVerdict,
  config: Pick<RelayConfig['dnsbl'], 'onError'>,
): DnsblDecision {
  const hit = verdict.listed.find((h) => h.action === 'reject');
  if (hit) return { kind: 'reject', hit };
  const failed = verdict.failed[0];
  if (failed && config.onError === 'tempfail') return { kind: 'tempfail', failed };
  return { kind: 'pass' };
}
