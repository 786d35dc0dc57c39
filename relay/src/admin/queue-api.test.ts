import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import type { QueuePage } from '../queue/listing.ts';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import {
  type QueueAdmin,
  type QueueListResponse,
  type QueueMessageView,
  registerQueueApi,
} from './queue-api.ts';

const TOKEN = 's3cret-token-for-tests';
const OLD = '0MCJ5ZQ8WAB12CD34EF';
const NEW = '0MCJ6A000ABCDEF0123';
const NEWER = '0MCJ6B000FEDCBA9876';

function envelope(
  queueId: string,
  receivedAt: string,
  recipients: SpooledRecipient[],
  extra: Partial<SpooledEnvelope> = {},
): SpooledEnvelope {
  return spooledEnvelope({
    queueId,
    receivedAt,
    recipients,
    size: 2048,
    tags: ['dnsbl:zone.test'],
    ...extra,
  });
}

/**
 * A stand-in for the delivery queue, so these tests exercise only the HTTP contract
 * (routes, auth, status codes, JSON shape); the real queue has its own tests.
 */
class FakeQueueAdmin implements QueueAdmin {
  messages = new Map<string, SpooledEnvelope>();
  scanning = false;
  retried: (string | undefined)[] = [];

  add(envelope: SpooledEnvelope): void {
    this.messages.set(envelope.queueId, envelope);
  }
  async list(): Promise<QueuePage> {
    const messages = [...this.messages.values()]
      .sort((a, b) => (a.queueId < b.queueId ? -1 : 1))
      .map((e) => ({ ...e, state: 'deferred' as const }));
    return { messages, total: messages.length, next: null };
  }
  async get(queueId: string): Promise<SpooledEnvelope | undefined> {
    return this.messages.get(queueId);
  }
  retryNow(queueId: string): boolean {
    if (!this.messages.has(queueId)) return false;
    this.retried.push(queueId);
    return true;
  }
  retryCount(): number | undefined {
    this.retried.push(undefined);
    return [...this.messages.values()].filter((e) =>
      e.recipients.some((r) => r.state === 'deferred' || r.state === 'pending'),
    ).length;
  }
  async remove(queueId: string): Promise<boolean> {
    return this.messages.delete(queueId);
  }
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe('queue API', () => {
  let server: FastifyInstance;
  let admin: FakeQueueAdmin;

  beforeEach(async () => {
    admin = new FakeQueueAdmin();
    // Added newest first: the API sorts oldest first whatever order the queue gives.
    admin.add(
      envelope(NEWER, '2025-07-01T12:00:00.000Z', [{ address: 'x@example.org', state: 'pending' }], {
        size: 10,
      }),
    );
    admin.add(
      envelope(
        OLD,
        '2025-07-01T10:00:00.000Z',
        [
          {
            address: 'bob@example.org',
            state: 'deferred',
            attempts: 3,
            response: '451 4.7.1 greylisted',
            status: '4.7.1',
            remoteHost: 'mx.example.org',
          },
          { address: 'carol@example.org', state: 'delivered', attempts: 1, response: '250 2.0.0 ok' },
        ],
        { attempts: 3, nextAttemptAt: '2025-07-01T10:30:00.000Z' },
      ),
    );
    admin.add(
      envelope(NEW, '2025-07-01T11:00:00.000Z', [{ address: 'dan@example.org', state: 'delivered' }], {
        sender: '',
      }),
    );
    server = Fastify({ logger: false });
    server.get('/healthz', async () => ({ status: 'ok' }));
    registerQueueApi(server, { admin, token: TOKEN });
    await server.ready();
  });
  afterEach(() => server.close());

  it('lists the queue oldest first, with each recipient and its last answer', async () => {
    const response = await server.inject({ method: 'GET', url: '/queue', headers: auth });
    assert.equal(response.statusCode, 200);
    const body = response.json<QueueListResponse>();
    assert.equal(body.total, 3);
    assert.deepEqual(
      body.messages.map((m) => m.queueId),
      [OLD, NEW, NEWER],
    );
    assert.deepEqual(body.messages[0], {
      queueId: OLD,
      state: 'deferred',
      receivedAt: '2025-07-01T10:00:00.000Z',
      sender: 'alice@example.com',
      size: 2048,
      attempts: 3,
      nextAttemptAt: '2025-07-01T10:30:00.000Z',
      user: 'alice',
      recipients: [
        {
          address: 'bob@example.org',
          state: 'deferred',
          attempts: 3,
          response: '451 4.7.1 greylisted',
          status: '4.7.1',
          remoteHost: 'mx.example.org',
        },
        { address: 'carol@example.org', state: 'delivered', attempts: 1, response: '250 2.0.0 ok' },
      ],
    } satisfies QueueMessageView);
    // Never attempted: zero attempts, due now; the envelope's other fields stay private.
    assert.equal(body.messages[2]?.attempts, 0);
    assert.equal(body.messages[2]?.nextAttemptAt, null);
    assert.ok(!response.body.includes('192.0.2.1') && !response.body.includes('dnsbl'));
  });

  it('shows one message, 404 for an unknown id, 400 for a malformed one', async () => {
    const one = await server.inject({ method: 'GET', url: `/queue/${NEW}`, headers: auth });
    assert.equal(one.statusCode, 200);
    assert.equal(one.json<QueueMessageView>().sender, '');

    const missing = await server.inject({ method: 'GET', url: '/queue/0MCJ5ZQ8WAAAAAAAAAA', headers: auth });
    assert.equal(missing.statusCode, 404);
    assert.deepEqual(missing.json(), { error: 'not found', queueId: '0MCJ5ZQ8WAAAAAAAAAA' });

    for (const bad of ['0mcj5zq8wab12cd34ef', '..%2F..%2Fetc%2Fpasswd', 'SHORT', `${OLD}0`]) {
      const response = await server.inject({ method: 'GET', url: `/queue/${bad}`, headers: auth });
      assert.equal(response.statusCode, 400, bad);
      assert.equal(response.json<{ error: string }>().error, 'invalid queue id');
    }
  });

  it('schedules one message or the whole queue for an attempt now', async () => {
    const one = await server.inject({ method: 'POST', url: `/queue/${OLD}/retry`, headers: auth });
    assert.equal(one.statusCode, 202);
    assert.deepEqual(one.json(), { queueId: OLD, scheduled: true });

    const unknown = await server.inject({
      method: 'POST',
      url: '/queue/0MCJ5ZQ8WAAAAAAAAAA/retry',
      headers: auth,
    });
    assert.equal(unknown.statusCode, 404);
    const bad = await server.inject({ method: 'POST', url: '/queue/nope/retry', headers: auth });
    assert.equal(bad.statusCode, 400);

    const all = await server.inject({ method: 'POST', url: '/queue/retry', headers: auth });
    assert.equal(all.statusCode, 202);
    // NEW is wholly delivered (kept only until it is cleaned up): nothing to retry there.
    assert.deepEqual(all.json(), { scheduled: 2 });
    assert.deepEqual(admin.retried, [OLD, undefined]);
  });

  it('answers 503 when the queue refuses a retry of a message it holds (stopping)', async () => {
    admin.retryNow = () => false;
    admin.retryCount = () => undefined;
    const response = await server.inject({ method: 'POST', url: `/queue/${OLD}/retry`, headers: auth });
    assert.equal(response.statusCode, 503);
    assert.deepEqual(response.json(), { error: 'the queue is not taking retries now', queueId: OLD });
    const all = await server.inject({ method: 'POST', url: '/queue/retry', headers: auth });
    assert.deepEqual(all.json(), { scheduled: 0 });
  });

  it('deletes a message, then answers 404 for it', async () => {
    const first = await server.inject({ method: 'DELETE', url: `/queue/${OLD}`, headers: auth });
    assert.equal(first.statusCode, 200);
    assert.deepEqual(first.json(), { queueId: OLD, deleted: true });
    assert.equal(await admin.get(OLD), undefined);

    const again = await server.inject({ method: 'DELETE', url: `/queue/${OLD}`, headers: auth });
    assert.equal(again.statusCode, 404);
    assert.deepEqual(again.json(), { error: 'not found', queueId: OLD });
  });

  it('answers 500 with the reason when the queue cannot delete', async () => {
    admin.remove = async () => {
      throw new Error('EACCES: permission denied');
    };
    const response = await server.inject({ method: 'DELETE', url: `/queue/${OLD}`, headers: auth });
    assert.equal(response.statusCode, 500);
    assert.deepEqual(response.json(), {
      error: 'cannot delete the message: EACCES: permission denied',
      queueId: OLD,
    });
  });

  it('wants the bearer token on every queue route, and only there', async () => {
    const routes = [
      { method: 'GET', url: '/queue' },
      { method: 'GET', url: `/queue/${OLD}` },
      { method: 'GET', url: '/queue/not-even-an-id' },
      { method: 'POST', url: '/queue/retry' },
      { method: 'POST', url: `/queue/${OLD}/retry` },
      { method: 'DELETE', url: `/queue/${OLD}` },
    ] as const;
    const wrong: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
      { authorization: TOKEN },
      { authorization: 'Bearer ' },
    ];
    for (const route of routes) {
      for (const headers of wrong) {
        const response = await server.inject({ ...route, headers });
        assert.equal(response.statusCode, 401, `${route.method} ${route.url} ${JSON.stringify(headers)}`);
        assert.match(String(response.headers['www-authenticate']), /^Bearer\b/);
        assert.deepEqual(response.json(), { error: 'unauthorized' });
      }
    }
    assert.equal(admin.messages.size, 3, 'nothing was deleted');
    assert.deepEqual(admin.retried, []);

    const lowercase = await server.inject({
      method: 'GET',
      url: '/queue',
      headers: { authorization: `bearer ${TOKEN}` },
    });
    assert.equal(lowercase.statusCode, 200, 'the scheme is case-insensitive (RFC 9110 11.1)');
    const health = await server.inject({ method: 'GET', url: '/healthz' });
    assert.equal(health.statusCode, 200, 'other admin routes stay open');
  });

  it('never accepts anything when the configured token is empty', async () => {
    const open = Fastify({ logger: false });
    registerQueueApi(open, { admin, token: '' });
    try {
      for (const authorization of [undefined, 'Bearer ', 'Bearer  ', 'Bearer ""']) {
        const headers = authorization === undefined ? {} : { authorization };
        const response = await open.inject({ method: 'GET', url: '/queue', headers });
        assert.equal(response.statusCode, 401, String(authorization));
      }
    } finally {
      await open.close();
    }
  });
});
