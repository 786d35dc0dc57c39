// Which addresses direct delivery may connect to. MX records and address literals are
// written by whoever sends or receives the mail, so without this check a recipient domain
// whose MX points at 127.0.0.1, 10.0.0.5 or 169.254.169.254 has the relay open SMTP
// connections inside the provider's own network (server-side request forgery). Only
// globally routable unicast addresses pass, as ipaddr.js classifies them from the IANA
// IPv4 and IPv6 special-purpose registries; an IPv6 address that carries an IPv4 one
// (IPv4-mapped, NAT64 64:ff9b::/96, 6to4) is judged by the IPv4 address it reaches.
// Configuration can allow more: allowLocalAddresses (tests, labs) or allowedNetworks.
import ipaddr from 'ipaddr.js';
import { TrustedNetworks } from './trusted-networks.ts';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** The class of a globally routable unicast address. */
export const GLOBAL = 'global';

export type AddressVerdict =
  | { allowed: true; range: string }
  /** range names the special-purpose block, e.g. loopback, private, ipv4Mapped:loopback. */
  | { allowed: false; range: string };

export interface DestinationPolicyOptions {
  /** Every address but unspecified, broadcast and multicast may be connected to. */
  allowLocalAddresses: boolean;
  /** Addresses and CIDR networks allowed although not globally routable. */
  allowedNetworks?: readonly string[];
  /** The relay's own interface addresses: mail sent there would loop. */
  ownAddresses?: readonly string[];
}

/** Connecting to these reaches nothing or everything (0.0.0.0 is this host on Linux). */
const NEVER = new Set(['unspecified', 'broadcast', 'multicast', 'invalid']);
/** IPv4 blocks that ipaddr.js names but that IANA lists as globally reachable. */
const GLOBAL_V4 = new Set(['unicast', 'as112', 'amt']);
const GLOBAL_V6 = new Set(['unicast', 'as112v6', 'amt']);

export class DestinationPolicy {
  readonly #allowLocal: boolean;
  readonly #allowed: TrustedNetworks;
  readonly #own: ReadonlySet<string>;

  /** Throws SLUICE_ERR_CONFIG_INVALID naming delivery.allowedNetworks for an entry that is no address or CIDR. */
  constructor(options: DestinationPolicyOptions) {
    this.#allowLocal = options.allowLocalAddresses;
    this.#allowed = new TrustedNetworks(options.allowedNetworks ?? [], 'delivery.allowedNetworks');
    this.#own = new Set((options.ownAddresses ?? []).flatMap((a) => normalised(a) ?? []));
  }

  /** Whether delivery may open a connection to this address (as it will be connected to). */
  check(address: string): AddressVerdict {
    const range = classifyAddress(address);
    const base = range.slice(range.lastIndexOf(':') + 1);
    if (NEVER.has(base)) return { allowed: false, range };
    if (this.#allowLocal || this.#allowed.contains(address)) return { allowed: true, range };
    if (range !== GLOBAL) return { allowed: false, range };
    if (this.#own.has(normalised(address) ?? '')) return { allowed: false, range: 'ownAddress' };
    return { allowed: true, range };
  }
}

/**
 * GLOBAL for a globally routable unicast address, else the special-purpose block it is in
 * (ipaddr.js's range names; "via:range" for an IPv4 address carried in an IPv6 one;
 * "invalid" for no address).
 */
export function classifyAddress(address: string): string {
  let parsed: Address;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return 'invalid';
  }
  return classify(parsed);
}

function classify(address: Address): string {
  if (address.kind() === 'ipv4') {
    const range = (address as ipaddr.IPv4).range();
    return GLOBAL_V4.has(range) ? GLOBAL : range;
  }
  const v6 = address as ipaddr.IPv6;
  const range = v6.range();
  const parts = v6.parts;
  switch (range) {
    case 'ipv4Mapped':
      return carried(v6.toIPv4Address(), 'ipv4Mapped');
    case 'rfc6052':
      // the well-known NAT64 prefix reaches the IPv4 address in its last 32 bits; the
      // local-use prefix 64:ff9b:1::/48 (RFC 8215) is for one network only
      return parts[2] === 0 && parts[3] === 0 && parts[4] === 0 && parts[5] === 0
        ? carried(v4From(parts[6], parts[7]), 'nat64')
        : 'nat64LocalUse';
    case '6to4':
      // 2002:AABB:CCDD::/48 is the 6to4 site of AA.BB.CC.DD (RFC 3056)
      return carried(v4From(parts[1], parts[2]), '6to4');
    default:
      if (!GLOBAL_V6.has(range)) return range;
      // outside 2000::/3 nothing is allocated as global unicast (IPv4-compatible ::/96 too)
      return ((parts[0] ?? 0) & 0xe000) === 0x2000 ? GLOBAL : 'unallocated';
  }
}

function carried(v4: ipaddr.IPv4, via: string): string {
  const range = classify(v4);
  return range === GLOBAL ? GLOBAL : `${via}:${range}`;
}

function v4From(high: number | undefined, low: number | undefined): ipaddr.IPv4 {
  const h = high ?? 0;
  const l = low ?? 0;
  return new ipaddr.IPv4([h >> 8, h & 0xff, l >> 8, l & 0xff]);
}

/** One spelling per address (IPv4-mapped as IPv4), for comparing with own addresses. */
function normalised(address: string): string | undefined {
  try {
    return ipaddr.process(address).toNormalizedString();
  } catch {
    return undefined;
  }
}
