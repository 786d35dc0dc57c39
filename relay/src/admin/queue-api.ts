// The queue API on the admin server: what `postqueue -p`, `postqueue -f`, `postqueue -i`,
// `postsuper -d`, `postsuper -h` and `postsuper -H` give Postfix users, behind a bearer
// token; the bulk forms act on every message the listing's filters select. Responses are built field
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
  /**
   * Schedules every waiting message (or the one given) for an attempt now; how many, or
   * undefined when stopping (or that message is not queued).
   */
  retryCount(queueId?: string): number | undefined;
  /** The scan of the spool at start is still going: the listing and total cover what it found so far. */
  readonly scanning: boolean;
  /** Deletes a message without notifying anyone; false if unknown. */
  remove(queueId: string): Promise<boolean>;
  /** Puts a message on hold; false if unknown, undefined when the queue is stopping. */
  hold(queueId: string): Promise<boolean | undefined>;
  /** Releases a held message, due now; false if not held, undefined when the queue is stopping. */
  release(queueId: string): Promise<boolean | undefined>;
  isHeld(queueId: string): boolean;
}

/** The bulk actions, and the key of the count in their answer. */
export const BULK_ACTIONS = {
  hold: 'held',
  release: 'released',
  retry: 'scheduled',
  delete: 'deleted',
} as const;
export type BulkAction = keyof typeof BULK_ACTIONS;

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
  /** active: being attempted; due: waiting for an active slot; deferred: waiting for its next attempt; held: on hold. */
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
  Record<'limit' | 'cursor' | 'sender' | 'domain' | 'state' | 'olderThan' | 'newerThan' | 'all', string>
>;

const FILTERS = ['sender', 'domain', 'state', 'olderThan', 'newerThan'] as const;

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
    return admin.isHeld(queueId) ? { ...toView(envelope), state: 'held' } : toView(envelope);
  });

  server.post(
    '/queue/retry',
    { onRequest: authorize },
    async (request: FastifyRequest<{ Querystring: ListQuery }>, reply) => {
      // no filter: every message (postqueue -f), as before filters existed
      if (!FILTERS.some((name) => request.query[name] !== undefined))
        return reply.code(202).send({ scheduled: admin.retryCount() ?? 0 });
      return bulk(admin, 'retry', request.query, reply);
    },
  );

  for (const action of ['hold', 'release', 'delete'] as const) {
    server.post(
      `/queue/${action}`,
      { onRequest: authorize },
      async (request: FastifyRequest<{ Querystring: ListQuery }>, reply) =>
        bulk(admin, action, request.query, reply),
    );
  }

  for (const action of ['hold', 'release'] as const) {
    server.post(`/queue/:id/${action}`, { onRequest: authorize }, async (request: IdRequest, reply) => {
      const queueId = checkedId(request, reply);
      if (queueId === undefined) return reply;
      let done: boolean | undefined;
      try {
        done = await (action === 'hold' ? admin.hold(queueId) : admin.release(queueId));
      } catch (err: unknown) {
        const detail = err instanceof Error ? err.message : 'unknown error';
        return reply.code(500).send({ error: `cannot ${action} the message: ${detail}`, queueId });
      }
      if (done === undefined) return reply.code(503).send({ error: 'the queue is stopping', queueId });
      if (!done) {
        if (action === 'release' && (await admin.get(queueId)) !== undefined)
          return reply.code(409).send({ error: 'the message is not on hold', queueId });
        return notFound(reply, queueId);
      }
      return reply.code(200).send({ queueId, state: action === 'hold' ? 'held' : 'due' });
    });
  }

  server.post('/queue/:id/retry', { onRequest: authorize }, async (request: IdRequest, reply) => {
    const queueId = checkedId(request, reply);
    if (queueId === undefined) return reply;
    if (admin.isHeld(queueId))
      return reply.code(409).send({ error: 'the message is on hold: release it first', queueId });
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

/**
 * A bulk action on every message the filters select, one at a time (each acts as its
 * single form does); answers with how many it acted on. hold, release and delete want a
 * filter, or all=true for the whole queue: an empty query string must not empty a queue.
 */
async function bulk(
  admin: QueueAdmin,
  action: BulkAction,
  raw: ListQuery,
  reply: FastifyReply,
): Promise<FastifyReply> {
  if (raw.limit !== undefined || raw.cursor !== undefined)
    return reply.code(400).send({ error: 'a bulk action takes filters, not limit or cursor' });
  const filtered = FILTERS.some((name) => raw[name] !== undefined);
  if (raw.all !== undefined && raw.all !== 'true') return reply.code(400).send({ error: 'all must be true' });
  if (!filtered && raw.all !== 'true')
    return reply.code(400).send({ error: `${action} of the whole queue wants all=true (or a filter)` });
  const query = listQuery({ ...raw, all: undefined }, Date.now());
  if (typeof query === 'string') return reply.code(400).send({ error: query } satisfies QueueErrorResponse);
  // release acts on held messages only; the others leave held ones be unless asked for them
  if (action === 'release') {
    if (query.state !== undefined && query.state !== 'held')
      return reply.code(400).send({ error: 'release acts on held messages: state must be held' });
    query.state = 'held';
  }
  const ids: string[] = [];
  for (let after: string | undefined; ; ) {
    const page = await admin.list({ ...query, limit: 1_000, ...(after === undefined ? {} : { after }) });
    for (const m of page.messages) {
      if (m.state !== 'held' || action === 'delete' || action === 'release') ids.push(m.queueId);
    }
    if (page.next === null) break;
    after = page.next;
  }
  let count = 0;
  let stopping = false;
  try {
    // a few at a time: their directory fsyncs are shared (group commit), not one per message
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < ids.length && !stopping; i = next++) {
        const acted = await act(admin, action, ids[i] as string);
        if (acted === undefined) stopping = true;
        else if (acted) count++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(BULK_WIDTH, ids.length) }, worker));
  } catch (err: unknown) {
    const detail = err instanceof Error ? err.message : 'unknown error';
    return reply
      .code(500)
      .send({ error: `cannot ${action} every message: ${detail}`, [BULK_ACTIONS[action]]: count });
  }
  if (stopping)
    return reply.code(503).send({ error: 'the queue is stopping', [BULK_ACTIONS[action]]: count });
  return reply.code(200).send({ [BULK_ACTIONS[action]]: count });
}

/** Messages a bulk action works on at once. */
const BULK_WIDTH = 16;

/** One message of a bulk action: acted on, not (gone meanwhile, or being attempted), or undefined when stopping. */
async function act(admin: QueueAdmin, action: BulkAction, queueId: string): Promise<boolean | undefined> {
  switch (action) {
    case 'hold':
      return admin.hold(queueId);
    case 'release':
      return admin.release(queueId);
    case 'delete':
      return admin.remove(queueId);
    case 'retry':
      // 0: an attempt is under way already
      return (admin.retryCount(queueId) ?? 0) > 0;
  }
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
