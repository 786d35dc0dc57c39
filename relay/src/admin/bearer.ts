// The admin APIs' one authentication: `Authorization: Bearer <token>`, the token from
// admin.tokenFile.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * An onRequest hook that answers 401 unless the request carries `Authorization: Bearer
 * <token>`. The comparison is of SHA-256 digests in constant time, so neither the token's
 * content nor its length leaks through timing. An empty token never matches.
 */
export function bearerCheck(token: string) {
  const expected = digest(token);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const presented = /^Bearer +([^\s]+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    const valid = presented !== undefined && timingSafeEqual(digest(presented), expected) && token !== '';
    if (valid) return undefined;
    const challenge =
      presented === undefined ? 'Bearer realm="sluice"' : 'Bearer realm="sluice", error="invalid_token"';
    return reply.code(401).header('www-authenticate', challenge).send({ error: 'unauthorized' });
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
