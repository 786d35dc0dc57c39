// The operator's HTTP endpoints: /healthz (the process answers), /readyz (caches synced
// while leading, or a healthy standby) and /metrics.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface AdminServerOptions {
  host: string;
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
  await server.listen({ host: options.host, port: options.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, port, close: () => server.close() };
}
