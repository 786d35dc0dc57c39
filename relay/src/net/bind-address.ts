// "All interfaces" is '::' with IPV6_V6ONLY off (Node's default): one socket takes IPv6
// clients and IPv4 ones (as ::ffff:a.b.c.d), so a relay in an IPv4, IPv6 or dual-stack
// pod network is reachable on every pod address. A kernel without IPv6 cannot open that
// socket; there the same setting means '0.0.0.0'.
import { createServer } from 'node:net';

export const ALL_INTERFACES = '::';
const IPV4_ANY = '0.0.0.0';

let probe: Promise<boolean> | undefined;

/** Whether this host can open an IPv6 socket (probed once per process). */
export function ipv6Available(): Promise<boolean> {
  probe ??= new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: ALL_INTERFACES, port: 0 }, () => server.close(() => resolve(true)));
  });
  return probe;
}

/** The address to bind for a configured one: '::' becomes '0.0.0.0' where IPv6 is missing. */
export async function bindAddress(address: string): Promise<string> {
  if (address !== ALL_INTERFACES) return address;
  return (await ipv6Available()) ? ALL_INTERFACES : IPV4_ANY;
}
