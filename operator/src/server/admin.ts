// The operator's HTTP endpoints: /healthz (the process answers), /readyz (caches synced
// while leading, or a healthy standby) and /metrics.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

const ALL_INTERFACES = '::';

export interface AdminServerOptions {
  /** Default '::': every interface, IPv4 and IPv6 (0.0.0.0 where the host has no IPv6). */
  host?: string;
  /** 0 picks a free port */
  port: number;
  registry: Registry;
  readiness: () => { ok: boolean; detail: string };
}

export async function startAdminServer(
  options: AdminServerOptions,
): Promise<{ server: FastifyInstance; port: number; close(): Promise<void> }> {
  const server = Fastify({ logger: false });
  server.get('/healthz', async () => ({ status: 'ok' }));
  server.get('/readyz', async (_request, reply) => {
    const { ok, detail } = options.readiness();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', detail });
  });
  server.get('/metrics', async (_request, reply) => {
    const body = await options.registry.metrics();
    return reply.header('content-type', options.registry.contentType).send(body);
  });
  const host = options.host ?? ALL_INTERFACES;
  try {
    await server.listen({ host, port: options.port });
  } catch (err: unknown) {
    // '::' takes IPv4 and IPv6 clients; a kernel without IPv6 refuses it, and there
    // "every interface" is 0.0.0.0
    if (host !== ALL_INTERFACES || (err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw err;
    await server.listen({ host: '0.0.0.0', port: options.port });
  }
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, port, close: () => server.close() };
}
