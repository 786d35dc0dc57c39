// The abuse API on the admin server, behind the bearer token:
//   GET    /abuse        live flags and automatic suspensions of the whole policy
//   DELETE /abuse/:user  lifts a user's suspension and clears their flags
import type { FastifyInstance } from 'fastify';
import type { AbuseReport } from '../abuse/watch.ts';
import { bearerCheck } from './bearer.ts';

export interface AbuseAdmin {
  report(): Promise<AbuseReport>;
  lift(user: string): Promise<boolean>;
}

export function registerAbuseApi(
  server: FastifyInstance,
  options: { abuse: AbuseAdmin; token: string },
): void {
  const authorize = bearerCheck(options.token);
  const unavailable = (err: unknown) => ({
    error: `abuse state is not available now: ${err instanceof Error ? err.message : 'unknown error'}`,
  });

  server.get('/abuse', { onRequest: authorize }, async (_request, reply) => {
    try {
      return await options.abuse.report();
    } catch (err: unknown) {
      return reply.code(503).send(unavailable(err));
    }
  });

  server.delete<{ Params: { user: string } }>(
    '/abuse/:user',
    { onRequest: authorize },
    async (request, reply) => {
      const { user } = request.params;
      try {
        if (!(await options.abuse.lift(user)))
          return reply.code(404).send({ error: 'no flag or suspension', user });
        return { user, lifted: true };
      } catch (err: unknown) {
        return reply.code(503).send(unavailable(err));
      }
    },
  );
}
