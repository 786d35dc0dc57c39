// The admin port of a relay with several workers, served by the primary. Health and
// readiness are every worker's; /metrics is the serving workers' registries and the
// primary's own worker metrics merged by prom-client's AggregatorRegistry.aggregate
// (counters and histograms summed, gauges as each one declares, the names unchanged).
// The primary asks the workers itself rather than through clusterMetrics(), which asks
// every connected worker: one still starting after a restart would not answer, and every
// scrape would wait 5 s and fail. The APIs are the workers' own, reached on their
// loopback admin ports with the caller's credentials (each worker checks the bearer
// token): a message lives in exactly one worker's spool, so a request about one id goes
// to the worker that has it; a listing is merged oldest first, with one cursor that
// carries each worker's; bulk counts are summed. The usage, abuse and suppression APIs
// read the shared state, which every worker sees alike when it is Redis: they are
// answered by the first serving worker.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { AggregatorRegistry } from 'prom-client';
import type { QueueListResponse } from '../admin/queue-api.ts';
import type { RelayConfig } from '../config/schema.ts';
import { bindAddress } from '../net/bind-address.ts';
import type { Supervisor } from './supervisor.ts';

interface Answer {
  status: number;
  body: unknown;
}

const PASSED_HEADERS = ['authorization', 'x-sluice-admin-token', 'content-type'];

async function ask(port: number, request: FastifyRequest, url = request.url): Promise<Answer> {
  const headers: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = request.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const hasBody = request.body !== undefined && request.method !== 'GET' && request.method !== 'HEAD';
  const response = await fetch(`http://127.0.0.1:${port}${url}`, {
    method: request.method,
    headers,
    ...(hasBody ? { body: JSON.stringify(request.body) } : {}),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    // not JSON: passed on as text
  }
  return { status: response.status, body };
}

function send(reply: FastifyReply, answer: Answer): FastifyReply {
  return reply.code(answer.status).send(answer.body);
}

function unavailable(reply: FastifyReply): FastifyReply {
  return reply.code(503).send({ error: 'a worker is not serving; try again' });
}

/** The per-worker cursors of a merged listing, as one opaque cursor. */
function encodeCursor(cursors: Array<string | null>): string | null {
  return cursors.every((c) => c === null) ? null : Buffer.from(JSON.stringify(cursors)).toString('base64url');
}

function decodeCursor(cursor: string, count: number): Array<string | null> | undefined {
  try {
    const cursors = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown;
    if (
      Array.isArray(cursors) &&
      cursors.length === count &&
      cursors.every((c) => c === null || typeof c === 'string')
    )
      return cursors as Array<string | null>;
  } catch {
    // answered below
  }
  return undefined;
}

export async function startPrimaryAdmin(options: {
  supervisor: Supervisor;
  config: RelayConfig;
}): Promise<{ port: number; close: () => Promise<void> }> {
  const { supervisor, config } = options;
  const server = Fastify({ logger: false });
  /** Every worker's admin port, or undefined while one is not serving. */
  const ports = (): number[] | undefined => {
    const all = supervisor.adminPorts();
    return all.every((p) => p !== undefined) ? (all as number[]) : undefined;
  };

  server.get('/healthz', async (request, reply) => {
    const all = supervisor.adminPorts();
    const answers = await Promise.all(
      all.map((port) => (port === undefined ? undefined : ask(port, request).catch(() => undefined))),
    );
    const ok = answers.every((a) => a?.status === 200);
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'a worker is down' });
  });

  server.get('/readyz', async (request, reply) => {
    const all = supervisor.adminPorts();
    const answers = await Promise.all(
      all.map((port) => (port === undefined ? undefined : ask(port, request).catch(() => undefined))),
    );
    const checks = [
      {
        name: 'workers',
        ok: !supervisor.stopping,
        detail: supervisor.stopping ? 'stopping' : `${supervisor.count} workers`,
      },
      ...answers.map((answer, index) => {
        const worker = answer?.body as
          | { checks?: Array<{ name: string; ok: boolean; detail?: string }> }
          | undefined;
        const failing = worker?.checks?.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail ?? 'not ok'}`);
        return {
          name: `worker ${index}`,
          ok: answer?.status === 200,
          detail: answer === undefined ? 'not serving' : failing?.length ? failing.join('; ') : 'serving',
        };
      }),
    ];
    const ready = checks.every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });

  server.get('/metrics', async (_request, reply) => {
    const workers = await supervisor.workerMetrics();
    // the primary's first: a metric merges as its first occurrence says (process_start_time_seconds)
    const own = await supervisor.registry.getMetricsAsJSON();
    const merged = AggregatorRegistry.aggregate([own, ...workers] as Parameters<
      typeof AggregatorRegistry.aggregate
    >[0]);
    return reply.header('content-type', merged.contentType).send(await merged.metrics());
  });

  // one message: the worker that has it answers; the others say 404
  const single = async (request: FastifyRequest, reply: FastifyReply) => {
    const all = ports();
    if (!all) return unavailable(reply);
    let last: Answer | undefined;
    for (const port of all) {
      last = await ask(port, request);
      if (last.status !== 404) return send(reply, last);
    }
    return send(reply, last ?? { status: 404, body: { error: 'not found' } });
  };
  server.get('/queue/:id', single);
  server.delete('/queue/:id', single);
  for (const action of ['retry', 'hold', 'release']) server.post(`/queue/:id/${action}`, single);

  // a bulk action on every worker: the counts summed, the worst status kept
  const bulk = async (request: FastifyRequest, reply: FastifyReply) => {
    const all = ports();
    if (!all) return unavailable(reply);
    const answers = await Promise.all(all.map((port) => ask(port, request)));
    const status = Math.max(...answers.map((a) => a.status));
    const merged: Record<string, unknown> = {};
    for (const { body } of answers) {
      for (const [key, value] of Object.entries((body ?? {}) as Record<string, unknown>)) {
        merged[key] =
          typeof value === 'number' && typeof merged[key] === 'number'
            ? (merged[key] as number) + value
            : (merged[key] ?? value);
      }
    }
    return reply.code(status).send(merged);
  };
  for (const action of ['retry', 'hold', 'release', 'delete']) server.post(`/queue/${action}`, bulk);

  server.get('/queue', async (request: FastifyRequest<{ Querystring: Record<string, string> }>, reply) => {
    const all = ports();
    if (!all) return unavailable(reply);
    const { cursor, ...rest } = request.query;
    const cursors = cursor === undefined ? all.map(() => '') : decodeCursor(cursor, all.length);
    if (!cursors) return reply.code(400).send({ error: 'invalid cursor' });
    const answers = await Promise.all(
      all.map((port, i) => {
        const own = cursors[i];
        const query = new URLSearchParams(rest);
        if (own) query.set('cursor', own);
        // a worker whose listing is done is still asked: the total is every worker's
        if (own === null) query.set('limit', '1');
        return ask(port, request, `/queue?${query}`);
      }),
    );
    const failed = answers.find((a) => a.status !== 200);
    if (failed) return send(reply, failed);
    const pages = answers.map((a) => a.body as QueueListResponse);
    const messages = pages
      .flatMap((p, i) => (cursors[i] === null ? [] : p.messages))
      .sort((a, b) => a.receivedAt.localeCompare(b.receivedAt));
    return {
      messages,
      total: pages.reduce((sum, p) => sum + p.total, 0),
      next: encodeCursor(pages.map((p, i) => (cursors[i] === null ? null : p.next))),
      scanning: pages.some((p) => p.scanning),
    } satisfies QueueListResponse;
  });

  // the usage, abuse and suppression APIs (shared state): the first serving worker
  server.all('/*', async (request, reply) => {
    const port = supervisor.adminPorts().find((p) => p !== undefined);
    if (port === undefined) return unavailable(reply);
    return send(reply, await ask(port, request));
  });

  await server.listen({ host: await bindAddress(config.admin.address), port: config.admin.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { port, close: () => server.close() };
}
