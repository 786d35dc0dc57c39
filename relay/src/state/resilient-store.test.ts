import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { type RedisServerHandle, startRedisServer } from '../testing/redis-server.ts';
import { waitFor } from '../testing/wait-for.ts';
import { bucketAt, bucketKey, MemoryStore } from './memory-store.ts';
import { createRedisClient, type RedisClient, RedisStore } from './redis-store.ts';
import { ResilientStore, type StateHealth } from './resilient-store.ts';
import { StateUnavailableError } from './store.ts';

const T = 28_333_334 * 60_000;
const rule = { key: 'rate:user:alice', cost: 1, limit: 5, windowMs: 60_000 };

/** Collects log lines as the relay's logger would write them. */
class Lines {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly logger = {
    info: (o: object, msg?: string) => this.lines.push({ level: 'info', msg, ...o }),
    warn: (o: object, msg?: string) => this.lines.push({ level: 'warn', msg, ...o }),
  };
  count(event: string): number {
    return this.lines.filter((l) => l.event === event).length;
  }
}

function client(server: RedisServerHandle): RedisClient {
  return createRedisClient({
    mode: 'standalone',
    nodes: server.nodes,
    tls: false,
    db: 0,
    commandTimeoutMs: 500,
  });
}

describe('ResilientStore', () => {
  let server: RedisServerHandle;
  let other: RedisStore;
  let store: ResilientStore;
  let logs: Lines;
  let health: StateHealth[];

  async function open(onDown: 'local' | 'tempfail'): Promise<void> {
    const namespace = `resilient-${randomUUID()}`;
    const c = client(server);
    logs = new Lines();
    health = [];
    store = new ResilientStore({
      redis: new RedisStore({ client: c, namespace }),
      client: c,
      local: new MemoryStore(),
      onDown,
      logger: logs.logger,
    });
    store.on('health', (h) => health.push(h));
    // Another pod on the same server, to see that state is shared.
    const o = client(server);
    o.on('error', () => {});
    other = new RedisStore({ client: o, namespace });
    await waitFor('the store to connect', async () => store.shared);
    // commands are refused until a client is connected (no offline queue): wait for both
    await waitFor('the other pod to connect', async () => o.status === 'ready');
  }

  /** Forgets what connecting logged and emitted, so a test sees only what follows. */
  function mark(): void {
    logs.lines.length = 0;
    health.length = 0;
  }

  beforeEach(async () => {
    server = await startRedisServer();
  });
  afterEach(async () => {
    await store?.close();
    await other?.close();
    await server.stop();
  });

  it('uses Redis while it answers: another pod sees the same counters', async () => {
    await open('local');
    // Connecting is reported like a recovery: one line, one event.
    assert.equal(logs.count('shared_state_up'), 1);
    assert.deepEqual(health, [{ shared: true, detail: 'shared state in Redis' }]);
    assert.equal(store.kind, 'redis');
    assert.equal(store.detail, 'shared state in Redis');
    for (let i = 0; i < 3; i++) assert.equal((await store.consume([rule], T)).allowed, true);
    assert.deepEqual((await other.consume([rule], T)).remaining, [1]);
    assert.equal(logs.count('shared_state_down'), 0);
  });

  it('keeps answering from local state when Redis dies, logging it once, and goes back when it returns', async () => {
    await open('local');
    await store.consume([rule], T);
    mark();
    await server.kill();

    const decisions = [];
    for (let i = 0; i < 50; i++) decisions.push(await store.consume([rule], T));
    // Local counters start afresh: five admitted, the rest refused, every call answered.
    assert.equal(decisions.filter((d) => d.allowed).length, 5);
    assert.equal(decisions.length, 50);
    await store.setCache('dnsbl:x', 'none', 60_000);
    assert.equal(await store.getCache('dnsbl:x'), 'none');
    assert.equal(store.shared, false);
    assert.equal(store.kind, 'memory');
    assert.match(store.detail, /^Redis unreachable \(.+\); serving from local state$/);
    assert.equal(logs.count('shared_state_down'), 1);
    const down = logs.lines.find((l) => l.event === 'shared_state_down');
    assert.equal(down?.level, 'warn');
    assert.deepEqual(
      health.map((h) => h.shared),
      [false],
    );

    await server.restart();
    await waitFor('health to report shared again', async () => health.at(-1)?.shared === true, {
      timeoutMs: 15_000,
    });
    assert.equal(store.shared, true);
    assert.equal(store.kind, 'redis');
    assert.equal(logs.count('shared_state_up'), 1);
    assert.equal(logs.count('shared_state_down'), 1);
    // Shared again: the restarted (empty) server holds what this pod consumes now.
    assert.deepEqual((await store.consume([rule], T)).remaining, [4]);
    assert.deepEqual((await other.consume([rule], T)).remaining, [3]);
  });

  it('refuses with StateUnavailableError while Redis is down when the policy says tempfail', async () => {
    await open('tempfail');
    assert.equal((await store.consume([rule], T)).allowed, true);
    mark();
    await server.kill();
    for (let i = 0; i < 10; i++) {
      await assert.rejects(store.consume([rule], T), (err: unknown) => {
        assert.ok(err instanceof StateUnavailableError);
        assert.ok(isSluiceError(err, 'SLUICE_ERR_STATE_UNAVAILABLE'));
        return true;
      });
    }
    await assert.rejects(store.lockRemaining(['lock:a']), StateUnavailableError);
    assert.equal(store.shared, false);
    assert.match(store.detail, /failing temporarily$/);
    assert.equal(logs.count('shared_state_down'), 1);

    await server.restart();
    await waitFor('the store to be shared again', async () => store.shared, { timeoutMs: 15_000 });
    assert.equal((await store.consume([rule], T)).allowed, true);
    assert.equal(logs.count('shared_state_up'), 1);
  });

  it('answers a call that times out (server hung) from local state, and recovers when it answers again', async () => {
    await open('local');
    assert.equal((await store.consume([rule], T)).allowed, true);
    mark();
    server.pause();
    // Redis still accepts the connection but never answers: the command times out.
    assert.deepEqual(await store.consume([rule], T), { allowed: true, retryAfterMs: 0, remaining: [4] });
    assert.equal(store.kind, 'memory');
    assert.equal(logs.count('shared_state_down'), 1);
    assert.match(String(logs.lines.find((l) => l.event === 'shared_state_down')?.reason), /timed out/);
    server.resume();
    await waitFor('the store to be shared again', async () => store.shared, { timeoutMs: 15_000 });
    // The timed-out call may still have run once Redis woke up: counted twice then,
    // which errs on the safe side; never lost.
    const [left] = (await store.consume([rule], T)).remaining;
    assert.ok(left === 2 || left === 3, `remaining ${left}`);
    assert.equal(logs.count('shared_state_up'), 1);
    assert.equal(logs.count('shared_state_down'), 1);
  });

  it('answers a call Redis refuses with an error reply locally, without declaring Redis down', async () => {
    await open('local');
    mark();
    // A counter that is not a number (written by hand) makes the script fail.
    const { index } = bucketAt(T, rule.windowMs);
    await other.setCache(bucketKey(rule.key, rule.windowMs, index), 'not a number', 60_000);
    for (let i = 0; i < 3; i++) assert.equal((await store.consume([rule], T)).allowed, true);
    assert.equal(store.shared, true);
    assert.deepEqual(health, []);
    assert.equal(logs.count('shared_state_down'), 0);
    assert.equal(logs.count('shared_state_error'), 1);
    // Other keys are still served by Redis.
    await store.setCache('dnsbl:y', 'listed', 60_000);
    assert.equal(await other.getCache('dnsbl:y'), 'listed');
  });

  it('logs nothing about an outage when it is closed', async () => {
    await open('local');
    mark();
    await store.close();
    assert.equal(logs.count('shared_state_down'), 0);
    assert.deepEqual(health, []);
  });
});
