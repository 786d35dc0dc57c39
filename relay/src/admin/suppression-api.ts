// The suppression API on the admin server, behind the bearer token:
//   GET    /suppressions            every suppressed recipient of the policy
//   GET    /suppressions/:address   one, or 404
//   DELETE /suppressions/:address   lifts a suppression (the next mail to it is accepted)
import type { FastifyInstance } from 'fastify';
import type { Suppression } from '../suppression/suppression-list.ts';
import { bearerCheck } from './bearer.ts';

export interface SuppressionAdmin {
  list(): Promise<Suppression[]>;
  check(address: string): Promise<Suppression | null>;
  remove(address: string): Promise<boolean>;
}

export interface SuppressionsResponse {
  suppressions: Suppression[];
}

export function registerSuppressionApi(
  server: FastifyInstance,
  options: { suppression: SuppressionAdmin; token: string },
): void {
  const authorize = bearerCheck(options.token);
  const unavailable = (err: unknown) => ({
    error: `the suppression list is not available now: ${err instanceof Error ? err.message : 'unknown error'}`,
  });

  server.get('/suppressions', { onRequest: authorize }, async (_request, reply) => {
    try {
      return { suppressions: await options.suppression.list() } satisfies SuppressionsResponse;
    } catch (err: unknown) {
      return reply.code(503).send(unavailable(err));
    }
  });

  server.get<{ Params: { address: string } }>(
    '/suppressions/:address',
    { onRequest: authorize },
    async (request, reply) => {
      const { address } = request.params;
      try {
        const found = await options.suppression.check(address);
        return found ?? reply.code(404).send({ error: 'not suppressed', address });
      } catch (err: unknown) {
        return reply.code(503).send(unavailable(err));
      }
    },
  );

  server.delete<{ Params: { address: string } }>(
    '/suppressions/:address',
    { onRequest: authorize },
    async (request, reply) => {
      const { address } = request.params;
      try {
        if (!(await options.suppression.remove(address)))
          return reply.code(404).send({ error: 'not suppressed', address });
        return { address, removed: true };
      } catch (err: unknown) {
        return reply.code(503).send(unavailable(err));
      }
    },
  );
}
