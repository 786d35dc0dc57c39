// The admin HTTP server: liveness, readiness (with the detail an SRE needs) and
// Prometheus metrics. Later stages add the queue API here, behind a bearer token.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  /** ok: true counts towards readiness; detail is shown either way. */
  check: () => { ok: boolean; detail?: string };
}

export async function startAdminServer(options: {
  address: string;
  port: number;
  registry: Registry;
  checks: readonly ReadinessCheck[];
  /** Adds further routes (the queue API) before the server listens. */
  register?: (server: FastifyInstance) => void;
  /** A cluster worker binds its own socket instead of sharing one through the primary (workers/). */
  exclusive?: boolean;
}): Promise<{ server: FastifyInstance; port: number }> {
  const server = Fastify({ logger: false });
  options.register?.(server);
  server.get('/healthz', async () => ({ status: 'ok' }));
  server.get('/readyz', async (_request, reply) => {
    const results = options.checks.map((c) => ({ name: c.name, ...c.check() }));
    const ready = results.every((r) => r.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks: results });
  });
  server.get('/metrics', async (_request, reply) => {
    const body = await options.registry.metrics();
    return reply.header('content-type', options.registry.contentType).send(body);
  });
  await server.listen({ host: options.address, port: options.port, exclusive: options.exclusive ?? false });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, port };
}
