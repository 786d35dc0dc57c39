// Which addresses of a domain's MX hosts delivery may connect to: each host's A and AAAA
// answers (an address literal is its own answer), kept or refused by the destination
// policy (net/destination-policy.ts). Pure: the transport resolves, this decides.
//
// When every address found is refused the mail bounces at once with 5.4.4, as Postfix and
// KumoMTA do for a destination that cannot be routed to (KumoMTA's prohibited_hosts: 550
// 5.4.4): an address literal never changes, and an MX that points only into private,
// loopback or metadata space is the domain owner's choice, not an outage, so retrying for
// the queue lifetime would only keep a probe of the provider's network in the queue and
// delay the sender's notice. A DNS failure of any host still defers (4.4.3): its answer
// might have held a usable address.
import type { DestinationPolicy } from '../net/destination-policy.ts';
import { type Failure, local } from './delivery-results.ts';
import type { HostAddresses, MxHost } from './mx-resolver.ts';

/** An MX host with the addresses to try, in mx-connect's shape (it then resolves nothing). */
export interface MxTarget {
  exchange: string;
  priority: number;
  A: string[];
  AAAA: string[];
}

export interface RefusedAddress {
  host: string;
  address: string;
  /** The special-purpose block, e.g. loopback, private, linkLocal, ipv4Mapped:loopback. */
  range: string;
}

export type TargetPlan =
  | { kind: 'targets'; targets: MxTarget[]; refused: RefusedAddress[] }
  | { kind: 'failed'; failure: Failure; refused: RefusedAddress[] };

/** More hosts than this are not looked up (mx-connect tries at most 20 addresses anyway). */
export const MAX_MX_HOSTS = 20;

/** The hosts (in the order given) with their allowed addresses, or why there is none. */
export function planTargets(
  domain: string,
  resolved: ReadonlyArray<{ host: MxHost; answer: HostAddresses }>,
  policy: DestinationPolicy,
): TargetPlan {
  const targets: MxTarget[] = [];
  const refused: RefusedAddress[] = [];
  let temporary: string | undefined;
  for (const { host, answer } of resolved) {
    if (answer.kind === 'temporary') {
      temporary ??= answer.reason;
      continue;
    }
    const target: MxTarget = { exchange: host.exchange, priority: host.priority, A: [], AAAA: [] };
    for (const address of answer.addresses) {
      const verdict = policy.check(address);
      if (!verdict.allowed) refused.push({ host: host.exchange, address, range: verdict.range });
      else if (address.includes(':')) target.AAAA.push(address);
      else target.A.push(address);
    }
    if (target.A.length + target.AAAA.length > 0) targets.push(target);
  }
  if (targets.length > 0) return { kind: 'targets', targets, refused };
  if (temporary !== undefined) {
    return { kind: 'failed', failure: local('deferred', '4.4.3', temporary, 'dns_tempfail'), refused };
  }
  if (refused.length > 0) return { kind: 'failed', failure: refusedFailure(domain, refused), refused };
  return {
    kind: 'failed',
    failure: local(
      'deferred',
      '4.4.4',
      `no usable MX host for ${domain}: its MX hosts have no address`,
      'no_usable_mx',
    ),
    refused,
  };
}

function refusedFailure(domain: string, refused: readonly RefusedAddress[]): Failure {
  const [first] = refused;
  if (domain.startsWith('[') && first !== undefined) {
    return local(
      'bounced',
      '5.4.4',
      `${domain} is not a globally routable address (${first.range}), which this relay does not deliver to`,
      'local_address',
    );
  }
  const shown = refused
    .slice(0, 3)
    .map((r) => `${r.host}[${r.address}] ${r.range}`)
    .join(', ');
  const more = refused.length > 3 ? `, and ${refused.length - 3} more` : '';
  return local(
    'bounced',
    '5.4.4',
    `every MX address of ${domain} is one this relay does not deliver to (not globally routable: ${shown}${more})`,
    'local_address',
  );
}
