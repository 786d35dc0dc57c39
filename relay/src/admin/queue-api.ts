// The queue API on the admin server: what `postqueue -p`, `postqueue -f`, `postqueue -i`
// and `postsuper -d` give Postfix users, behind a bearer token. Responses are built field
// by field from the envelope so nothing else (client IP, tags) leaks by accident. The
// listing comes in pages (a cursor, oldest first) and takes filters, so a queue of a
// million messages is looked through without a million envelopes in one answer.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { QUEUE_STATES, type QueuePage, type QueueQuery, type QueueState } from '../queue/listing.ts';
import type { RecipientState, SpooledEnvelope } from '../spool/envelope.ts';
import { QUEUE_ID_PATTERN } from '../spool/queue-id.ts';
import { bearerCheck } from './bearer.ts';

/** What the API needs from the queue. */
export interface QueueAdmin {
  /** One page of the queue, oldest first. */
  list(query: QueueQuery): Promise<QueuePage>;
  get(queueId: string): Promise<SpooledEnvelope | undefined>;
  /** Schedules one message for an attempt now; false if unknown (or the queue is stopping). */
  retryNow(queueId: string): boolean;
  /** Schedules every waiting message for an attempt now; how many, or undefined when stopping. */
  retryCount(): number | undefined;
  /** The scan of the spool at start is still going: the listing and total cover what it found so far. */
  readonly scanning: boolean;
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
  /** active: being attempted; due: waiting for an active slot; deferred: waiting for its next attempt. */
  state?: QueueState;
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
  /** Messages in the queue (all of them, not this page's). */
  total: number;
  /** Pass as ?cursor= for the next page; null at the end of the queue. */
  next: string | null;
  /** The scan of the spool at start is still going: total and pages cover only what it found so far. */
  scanning: boolean;
}

type ListQuery = Partial<
  Record<'limit' | 'cursor' | 'sender' | 'domain' | 'state' | 'olderThan' | 'newerThan', string>
>;

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

  server.get(
    '/queue',
    { onRequest: authorize },
    async (request: FastifyRequest<{ Querystring: ListQuery }>, reply) => {
      const query = listQuery(request.query, Date.now());
      if (typeof query === 'string')
        return reply.code(400).send({ error: query } satisfies QueueErrorResponse);
      const page = await admin.list(query);
      return {
        messages: page.messages.map((m) => ({ ...toView(m), state: m.state })),
        total: page.total,
        next: page.next,
        scanning: admin.scanning,
      } satisfies QueueListResponse;
    },
  );

  server.get('/queue/:id', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    const envelope = await admin.get(queueId);
    if (envelope === undefined) return notFound(reply, queueId);
    return toView(envelope);
  });

  server.post('/queue/retry', { onRequest: authorize }, async (_request, reply) => {
    return reply.code(202).send({ scheduled: admin.retryCount() ?? 0 });
  });

  server.post('/queue/:id/retry', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    if (!admin.retryNow(queueId)) {
      if ((await admin.get(queueId)) === undefined) return notFound(reply, queueId);
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

const MAX_LIMIT = 1_000;

/** The listing's query string as a QueueQuery, or what is wrong with it. */
export function listQuery(raw: ListQuery, now: number): QueueQuery | string {
  const query: QueueQuery = {};
  if (raw.limit !== undefined) {
    const limit = Number(raw.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
      return `limit must be a whole number from 1 to ${MAX_LIMIT}`;
    query.limit = limit;
  }
  if (raw.cursor !== undefined) {
    if (!QUEUE_ID_PATTERN.test(raw.cursor)) return 'cursor must be a queue id (the next of an earlier page)';
    query.after = raw.cursor;
  }
  if (raw.sender !== undefined) {
    if (raw.sender === '' || raw.sender.length > 320) return 'sender must be an address or @domain';
    query.sender = raw.sender;
  }
  if (raw.domain !== undefined) {
    if (!/^[^\s@]{1,253}$/.test(raw.domain)) return 'domain must be a domain name';
    query.domain = raw.domain;
  }
  if (raw.state !== undefined) {
    const state = QUEUE_STATES.find((s) => s === raw.state);
    if (state === undefined) return `state must be one of ${QUEUE_STATES.join(', ')}`;
    query.state = state;
  }
  for (const [name, value] of [
    ['olderThan', raw.olderThan],
    ['newerThan', raw.newerThan],
  ] as const) {
    if (value === undefined) continue;
    const seconds = Number(value);
    if (value === '' || !Number.isFinite(seconds) || seconds < 0)
      return `${name} must be seconds (0 or more)`;
    if (name === 'olderThan') query.receivedBefore = now - seconds * 1000;
    else query.receivedAfter = now - seconds * 1000;
  }
  return query;
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
