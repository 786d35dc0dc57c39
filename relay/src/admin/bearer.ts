// The admin APIs' one authentication: `Authorization: Bearer <token>`, the token from
// admin.tokenFile. The same token may come as `X-Sluice-Admin-Token: <token>` instead:
// through the Kubernetes API server's pod proxy, Authorization carries the caller's
// credentials for the API server, which takes it off the request.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * An onRequest hook that answers 401 unless the request carries `Authorization: Bearer
 * <token>` (or the token in TOKEN_HEADER). The comparison is of SHA-256 digests in constant time, so neither the token's
 * content nor its length leaks through timing. An empty token never matches.
 */
export function bearerCheck(token: string) {
  const expected = digest(token);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const header = request.headers[TOKEN_HEADER];
    // the header first: an Authorization a proxy left in place is the proxy's caller's
    const presented =
      (typeof header === 'string' && /^[^\s]+$/.test(header) ? header : undefined) ??
      /^Bearer +([^\s]+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    const valid = presented !== undefined && timingSafeEqual(digest(presented), expected) && token !== '';
    if (valid) return undefined;
    const challenge =
      presented === undefined ? 'Bearer realm="sluice"' : 'Bearer realm="sluice", error="invalid_token"';
    return reply.code(401).header('www-authenticate', challenge).send({ error: 'unauthorized' });
  };
}

/** The header that may carry the token instead of Authorization (lower case, as Node gives it). */
export const TOKEN_HEADER = 'x-sluice-admin-token';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
