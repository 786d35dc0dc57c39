// The DNS name under which a DNSBL publishes an address (RFC 5782 §2.1 and §2.4): IPv4
// octets reversed, IPv6 as all 32 nibbles reversed. An IPv4-mapped IPv6 address (what a
// dual-stack listener reports for an IPv4 client) is looked up as the IPv4 address it carries.
import { isIP } from 'node:net';

/** '1.2.3.4' + 'zone' → '4.3.2.1.zone'; '2001:db8::1' → '1.0.0.0.….8.b.d.0.1.0.0.2.zone'. Throws TypeError on a non-IP. */
export function dnsblQueryName(ip: string, zone: string): string {
  const suffix = zone.replace(/^\.+|\.+$/g, '');
  if (suffix === '') throw new TypeError('DNSBL zone is empty');
  const groups = parse(ip);
  if (groups.kind === 'ipv4') return `${groups.octets.toReversed().join('.')}.${suffix}`;
  const nibbles = groups.words.map((w) => w.toString(16).padStart(4, '0')).join('');
  return `${[...nibbles].toReversed().join('.')}.${suffix}`;
}

/** The dotted IPv4 address inside an IPv4-mapped IPv6 address; any other address unchanged. */
export function unmapIpv4(ip: string): string {
  try {
    const groups = parse(ip);
    return groups.kind === 'ipv4' ? groups.octets.join('.') : ip;
  } catch {
    return ip;
  }
}

type Parsed = { kind: 'ipv4'; octets: number[] } | { kind: 'ipv6'; words: number[] };

function parse(ip: string): Parsed {
  // A scope id ('fe80::1%eth0') names the local interface, not the address.
  const address = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  switch (isIP(address)) {
    case 4:
      return { kind: 'ipv4', octets: address.split('.').map(Number) };
    case 6: {
      const words = ipv6Words(address);
      const mapped = words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff;
      if (!mapped) return { kind: 'ipv6', words };
      const [high = 0, low = 0] = words.slice(6);
      return { kind: 'ipv4', octets: [high >> 8, high & 0xff, low >> 8, low & 0xff] };
    }
    default:
      throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
  }
}

/** The eight 16-bit words of an address that isIP() has already accepted as IPv6. */
function ipv6Words(address: string): number[] {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    // Embedded IPv4 in the last 32 bits ('::ffff:1.2.3.4'): rewrite it as two hex words.
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const words = (part: string | undefined): number[] =>
    part === undefined || part === '' ? [] : part.split(':').map((w) => Number.parseInt(w, 16));
  const front = words(head);
  const back = words(rest);
  const zeros = rest === undefined ? 0 : 8 - front.length - back.length;
  return [...front, ...new Array<number>(zeros).fill(0), ...back];
}
