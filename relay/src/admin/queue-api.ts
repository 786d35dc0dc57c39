// The queue API on the admin server: what `postqueue -p`, `postqueue -f`, `postqueue -i`
// and `postsuper -d` give Postfix users, behind a bearer token. Responses are built field
// by field from the envelope so nothing else (client IP, tags) leaks by accident.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RecipientState, SpooledEnvelope } from '../spool/envelope.ts';
import { QUEUE_ID_PATTERN } from '../spool/queue-id.ts';
import { bearerCheck } from './bearer.ts';

/** What the API needs from the queue. */
export interface QueueAdmin {
  /** Every message in the queue. */
  list(): SpooledEnvelope[];
  get(queueId: string): SpooledEnvelope | undefined;
  /** Schedules one message (or, without an id, every message) for an attempt now; false if unknown. */
  retryNow(queueId?: string): boolean;
  /** Deletes a message without notifying anyone; false if unknown. */
  remove(queueId: string): Promise<boolean>;
}

export interface QueueRecipientView {
  address: string;
  state: RecipientState;
  response?: string;
  status?: string;
  attempts?: number;
  remoteHost?: string;
}

export interface QueueMessageView {
  queueId: string;
  receivedAt: string;
  sender: string;
  size: number;
  attempts: number;
  /** null: due now. */
  nextAttemptAt: string | null;
  user: string;
  recipients: QueueRecipientView[];
}

export interface QueueListResponse {
  messages: QueueMessageView[];
  total: number;
}

export interface QueueErrorResponse {
  error: string;
  queueId?: string;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

/** Adds the /queue routes to the admin server; every one of them wants the bearer token. */
export function registerQueueApi(
  server: FastifyInstance,
  options: { admin: QueueAdmin; token: string },
): void {
  const { admin } = options;
  const authorize = bearerCheck(options.token);

  server.get('/queue', { onRequest: authorize }, async (): Promise<QueueListResponse> => {
    const messages = [...admin.list()].sort(oldestFirst).map(toView);
    return { messages, total: messages.length };
  });

  server.get('/queue/:id', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    const envelope = admin.get(queueId);
    if (envelope === undefined) return notFound(reply, queueId);
    return toView(envelope);
  });

  server.post('/queue/retry', { onRequest: authorize }, async (_request, reply) => {
    const waiting = admin.list().filter(hasWorkLeft).length;
    const scheduled = admin.retryNow() ? waiting : 0;
    return reply.code(202).send({ scheduled });
  });

  server.post('/queue/:id/retry', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    if (!admin.retryNow(queueId)) {
      if (admin.get(queueId) === undefined) return notFound(reply, queueId);
      // Queued but refused: the queue is stopping (draining to another pod).
      return reply.code(503).send({ error: 'the queue is not taking retries now', queueId });
    }
    return reply.code(202).send({ queueId, scheduled: true });
  });

  server.delete('/queue/:id', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    let removed: boolean;
    try {
      removed = await admin.remove(queueId);
    } catch (err: unknown) {
      const detail = err instanceof Error ? err.message : 'unknown error';
      return reply.code(500).send({ error: `cannot delete the message: ${detail}`, queueId });
    }
    if (!removed) return notFound(reply, queueId);
    return reply.code(200).send({ queueId, deleted: true });
  });
}

/** The queue id from the path, or undefined after answering 400. */
function checkedId(request: IdRequest, reply: FastifyReply): string | undefined {
  const queueId = request.params.id;
  if (QUEUE_ID_PATTERN.test(queueId)) return queueId;
  reply.code(400).send({ error: 'invalid queue id', queueId } satisfies QueueErrorResponse);
  return undefined;
}

function notFound(reply: FastifyReply, queueId: string): FastifyReply {
  return reply.code(404).send({ error: 'not found', queueId } satisfies QueueErrorResponse);
}

function hasWorkLeft(envelope: SpooledEnvelope): boolean {
  return envelope.recipients.some((r) => r.state === 'pending' || r.state === 'deferred');
}

function oldestFirst(a: SpooledEnvelope, b: SpooledEnvelope): number {
  const byArrival = Date.parse(a.receivedAt) - Date.parse(b.receivedAt);
  if (byArrival !== 0 && !Number.isNaN(byArrival)) return byArrival;
  return a.queueId < b.queueId ? -1 : a.queueId > b.queueId ? 1 : 0;
}

function toView(envelope: SpooledEnvelope): QueueMessageView {
  return {
    queueId: envelope.queueId,
    receivedAt: envelope.receivedAt,
    sender: envelope.sender,
    size: envelope.size,
    attempts: envelope.attempts ?? 0,
    nextAttemptAt: envelope.nextAttemptAt ?? null,
    user: envelope.user,
    recipients: envelope.recipients.map((r) => {
      const view: QueueRecipientView = { address: r.address, state: r.state };
      if (r.response !== undefined) view.response = r.response;
      if (r.status !== undefined) view.status = r.status;
      if (r.attempts !== undefined) view.attempts = r.attempts;
      if (r.remoteHost !== undefined) view.remoteHost = r.remoteHost;
      return view;
    }),
  };
}
