// Free TCP ports for tests: bind port 0, read the port back, close. A port found
// this way can be taken by someone else before it is used again; callers that bind it
// later retry or fail with a clear error.
import { createServer, type Server } from 'node:net';

function listen(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port free on every one of `hosts` (e.g. the pod IPs that will all listen on it). */
export async function freePortOn(hosts: readonly string[]): Promise<number> {
  const [first = '127.0.0.1', ...rest] = hosts;
  for (let attempt = 0; attempt < 20; attempt++) {
    const probe = await listen(0, first);
    const address = probe.address();
    const port = address !== null && typeof address === 'object' ? address.port : 0;
    const others: Server[] = [];
    try {
      for (const host of rest) others.push(await listen(port, host));
      return port;
    } catch {
      // taken on one of the other addresses: try another port
    } finally {
      await Promise.all([probe, ...others].map(close));
    }
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`);
}

/** A free port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return freePortOn(['127.0.0.1']);
}
