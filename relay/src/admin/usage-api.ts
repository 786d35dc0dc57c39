// GET /usage on the admin server: each user's usage per hour or per day, from the shared
// state (so any relay of a policy answers for all of them), behind the bearer token.
//   /usage?user=alice&period=hour|day&from=2025-07-01T00&to=2025-07-01T23
// from and to take ISO 8601 times, days (2025-07-01) or hours (2025-07-01T10); the default
// is the last 24 hours or the last 7 days.
import type { FastifyInstance } from 'fastify';
import { type UsageQuery, type UsageReportRow, usageQuery } from '../usage/report.ts';
import { bearerCheck } from './bearer.ts';

export interface UsageSource {
  report(query: UsageQuery): Promise<UsageReportRow[]>;
}

export interface UsageResponse {
  period: UsageQuery['period'];
  from: string;
  to: string;
  user?: string;
  rows: UsageReportRow[];
}

type UsageRequest = { Querystring: { user?: string; period?: string; from?: string; to?: string } };

export function registerUsageApi(
  server: FastifyInstance,
  options: { usage: UsageSource; token: string; now?: () => number },
): void {
  const now = options.now ?? Date.now;
  server.get<UsageRequest>('/usage', { onRequest: bearerCheck(options.token) }, async (request, reply) => {
    const parsed = usageQuery(request.query, now());
    if ('error' in parsed) return reply.code(400).send({ error: parsed.error });
    const { query } = parsed;
    let rows: UsageReportRow[];
    try {
      rows = await options.usage.report(query);
    } catch (err: unknown) {
      const detail = err instanceof Error ? err.message : 'unknown error';
      return reply.code(503).send({ error: `usage is not available now: ${detail}` });
    }
    const body: UsageResponse = {
      period: query.period,
      from: new Date(query.from).toISOString(),
      to: new Date(query.to).toISOString(),
      ...(query.user === undefined ? {} : { user: query.user }),
      rows,
    };
    return body;
  });
}
