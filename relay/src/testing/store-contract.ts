// The behaviour every StateStore backend must show, run against each of them (memory,
// Redis). Time for windows and slots is the `now` argument; TTLs (locks, cache) run on
// the backend's clock, which a backend under test may let the suite move forward.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { FailureRule, RateRule, StateStore } from '../state/store.ts';
import { waitFor } from './wait-for.ts';

export interface StoreUnderTest {
  store: StateStore;
  cleanup: () => Promise<void>;
  /** Moves the TTL clock forward; absent when TTLs run in real time (then the suite waits). */
  advance?: (ms: number) => void;
}

const MINUTE = 60_000;
/** A window boundary (a multiple of a minute) in a realistic epoch range. */
const T = 28_333_334 * MINUTE;

function rate(key: string, limit: number, cost = 1, windowMs = MINUTE): RateRule {
  return { key, cost, limit, windowMs };
}

export function storeContract(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`StateStore contract: ${name}`, () => {
    let s: StoreUnderTest;
    let store: StateStore;
    beforeEach(async () => {
      s = await make();
      store = s.store;
    });
    afterEach(async () => {
      await s.cleanup();
    });

    /** Lets `ms` of TTL time pass, then waits (with a deadline) for the condition. */
    async function afterTtl(ms: number, what: string, condition: () => Promise<boolean>): Promise<void> {
      s.advance?.(ms + 1);
      await waitFor(what, condition, { timeoutMs: ms + 5000 });
    }

    /** How many single units a key admits at `now`, consuming them. */
    async function drain(key: string, limit: number, now: number): Promise<number> {
      let taken = 0;
      while (taken <= 3 * limit && (await store.consume([rate(key, limit)], now)).allowed) taken++;
      return taken;
    }

    describe('consume', () => {
      it('admits up to the limit, reporting what is left, then refuses', async () => {
        const rule = rate('rate:user:alice', 3);
        for (const left of [2, 1, 0]) {
          assert.deepEqual(await store.consume([rule], T + 1000), {
            allowed: true,
            retryAfterMs: 0,
            remaining: [left],
          });
        }
        const refused = await store.consume([rule], T + 1000);
        assert.equal(refused.allowed, false);
        assert.equal(refused.blockedBy, 0);
        assert.deepEqual(refused.remaining, [0]);
        assert.ok(
          refused.retryAfterMs > 0 && refused.retryAfterMs <= MINUTE,
          `retryAfterMs ${refused.retryAfterMs}`,
        );
      });

      it('admits an empty rule list', async () => {
        assert.deepEqual(await store.consume([], T), { allowed: true, retryAfterMs: 0, remaining: [] });
      });

      it('is all or nothing: one rule over its limit consumes nothing from the others', async () => {
        const wide = rate('rate:user:bob', 10);
        const narrow = rate('rate:ip:192.0.2.1', 2);
        assert.equal((await store.consume([wide, narrow], T)).allowed, true);
        assert.equal((await store.consume([wide, narrow], T)).allowed, true);
        const refused = await store.consume([wide, narrow], T);
        assert.equal(refused.allowed, false);
        assert.equal(refused.blockedBy, 1);
        assert.deepEqual(refused.remaining, [8, 0]);
        // The refused call took nothing from `wide`: 8 units are still there.
        assert.deepEqual(await store.consume([rate('rate:user:bob', 10, 8)], T), {
          allowed: true,
          retryAfterMs: 0,
          remaining: [0],
        });
        assert.equal((await store.consume([wide], T)).allowed, false);
      });

      it('names the first blocked rule when several are over', async () => {
        await store.consume([rate('rate:a', 1), rate('rate:b', 1)], T);
        const refused = await store.consume([rate('rate:ok', 5), rate('rate:a', 1), rate('rate:b', 1)], T);
        assert.equal(refused.blockedBy, 1);
        assert.deepEqual(refused.remaining, [5, 0, 0]);
      });

      it('counts cost units (recipients) and reads without consuming at cost 0', async () => {
        const messages = rate('rate:user:carol:messages', 100);
        const recipients = (n: number) => rate('rate:user:carol:recipients', 30, n);
        assert.deepEqual((await store.consume([messages, recipients(25)], T)).remaining, [99, 5]);
        const refused = await store.consume([messages, recipients(10)], T);
        assert.equal(refused.allowed, false);
        assert.equal(refused.blockedBy, 1);
        assert.deepEqual(refused.remaining, [99, 5]);
        assert.deepEqual(await store.consume([recipients(0)], T), {
          allowed: true,
          retryAfterMs: 0,
          remaining: [5],
        });
        assert.deepEqual((await store.consume([messages, recipients(5)], T)).remaining, [98, 0]);
        assert.deepEqual(await store.consume([recipients(0)], T), {
          allowed: true,
          retryAfterMs: 0,
          remaining: [0],
        });
      });
    });

    describe('sliding window (10 per minute)', () => {
      it('still weighs the previous minute fully at its end: about 0 at 60 s, 5 at 90 s', async () => {
        assert.equal(await drain('slide:a', 10, T), 10);
        assert.equal(await drain('slide:a', 10, T + 60_000), 0);
        assert.equal(await drain('slide:a', 10, T + 90_000), 5);
      });

      it('forgets a minute once a whole window has passed: 10 at 120 s', async () => {
        assert.equal(await drain('slide:b', 10, T), 10);
        assert.equal(await drain('slide:b', 10, T + 120_000), 10);
      });

      it('allows no burst of twice the limit across a window edge', async () => {
        assert.equal(await drain('slide:c', 10, T + 59_999), 10);
        assert.equal(await drain('slide:c', 10, T + 60_000), 0);
        assert.equal(await drain('slide:c', 10, T + 60_000 + 30_000), 5);
      });

      it('tells when there is room again', async () => {
        await drain('slide:d', 10, T);
        // Room only once the minute has decayed by a tenth into the next: 66 s, capped at the window.
        assert.equal((await store.consume([rate('slide:d', 10)], T + 1000)).retryAfterMs, MINUTE);
        const at60 = await store.consume([rate('slide:d', 10)], T + 60_000);
        assert.equal(at60.retryAfterMs, 6000);
        assert.equal((await store.consume([rate('slide:d', 10)], T + 60_000 + 5999)).allowed, false);
        assert.equal((await store.consume([rate('slide:d', 10)], T + 60_000 + 6000)).allowed, true);
        // A cost larger than the whole limit never fits: the most it can say is a window.
        const huge = await store.consume([rate('slide:e', 10, 11)], T);
        assert.equal(huge.allowed, false);
        assert.equal(huge.retryAfterMs, MINUTE);
        assert.deepEqual(huge.remaining, [10]);
      });

      it('reports retryAfterMs for a cost above 1 from the decay it needs', async () => {
        await store.consume([rate('slide:f', 30, 30)], T);
        // At 75 s the previous minute weighs 30 * 0.75 = 22.5; 10 more needs it at 20: 80 s.
        const refused = await store.consume([rate('slide:f', 30, 10)], T + 75_000);
        assert.equal(refused.retryAfterMs, 5000);
        assert.deepEqual(refused.remaining, [7]);
        assert.equal((await store.consume([rate('slide:f', 30, 10)], T + 80_000)).allowed, true);
      });
    });

    describe('recordFailure and lockRemaining', () => {
      const failure = (who: string, threshold: number, cooldownMs = 30_000): FailureRule => ({
        counterKey: `authfail:${who}`,
        lockKey: `lock:${who}`,
        threshold,
        windowMs: 10 * MINUTE,
        cooldownMs,
      });

      it('locks at the threshold and reports the cooldown left', async () => {
        const rule = failure('user:dave', 3);
        assert.deepEqual(await store.recordFailure([rule], T), [false]);
        assert.deepEqual(await store.recordFailure([rule], T + 1000), [false]);
        assert.deepEqual(await store.lockRemaining(['lock:user:dave']), [0]);
        assert.deepEqual(await store.recordFailure([rule], T + 2000), [true]);
        const [left, none] = await store.lockRemaining(['lock:user:dave', 'lock:user:nobody']);
        assert.ok(left !== undefined && left > 20_000 && left <= 30_000, `lock left ${left}`);
        assert.equal(none, 0);
        // A further failure while locked keeps the lock, it does not restart it.
        assert.deepEqual(await store.recordFailure([rule], T + 3000), [true]);
        const [still] = await store.lockRemaining(['lock:user:dave']);
        assert.ok(still !== undefined && still <= left, `lock left ${still} after ${left}`);
      });

      it('counts per key, and per rule when several are given', async () => {
        const user = failure('user:erin', 2);
        const ip = failure('ip:198.51.100.7', 3);
        assert.deepEqual(await store.recordFailure([user, ip], T), [false, false]);
        assert.deepEqual(await store.recordFailure([failure('user:frank', 2)], T), [false]);
        assert.deepEqual(await store.recordFailure([user, ip], T), [true, false]);
        assert.deepEqual(await store.recordFailure([failure('user:frank', 2), ip], T), [true, true]);
        assert.deepEqual(await store.recordFailure([failure('user:grace', 2)], T), [false]);
      });

      it('lets a lock run out after its cooldown; failures still in the window lock again', async () => {
        const rule = failure('user:heidi', 2, 200);
        await store.recordFailure([rule], T);
        assert.deepEqual(await store.recordFailure([rule], T), [true]);
        await afterTtl(
          200,
          'the lock to expire',
          async () => (await store.lockRemaining(['lock:user:heidi']))[0] === 0,
        );
        assert.deepEqual(await store.recordFailure([rule], T + 1000), [true]);
      });

      it('forgets failures that have slid out of the window', async () => {
        const rule = failure('user:ivan', 2);
        assert.deepEqual(await store.recordFailure([rule], T), [false]);
        assert.deepEqual(await store.recordFailure([rule], T + 20 * MINUTE), [false]);
      });
    });

    describe('slots', () => {
      it('enforces the limit; a release frees a slot; the same slot may be taken again', async () => {
        const take = (id: string) => store.acquireSlot('conn:ip:192.0.2.9', id, 2, MINUTE, T);
        assert.equal(await take('a'), true);
        assert.equal(await take('b'), true);
        assert.equal(await take('c'), false);
        assert.equal(await take('b'), true);
        await store.releaseSlot('conn:ip:192.0.2.9', 'a');
        assert.equal(await take('c'), true);
        assert.equal(await take('d'), false);
        await store.releaseSlot('conn:ip:192.0.2.9', 'nobody');
        await store.releaseSlot('conn:ip:unknown', 'a');
      });

      it('frees expired slots by themselves, and re-acquiring refreshes a slot', async () => {
        const take = (id: string, now: number) => store.acquireSlot('conn:ip:192.0.2.10', id, 1, 1000, now);
        assert.equal(await take('x', T), true);
        assert.equal(await take('y', T + 500), false);
        assert.equal(await take('y', T + 1000), true);
        assert.equal(await take('y', T + 1800), true);
        assert.equal(await take('x', T + 2500), false);
        assert.equal(await take('x', T + 2800), true);
      });
    });

    describe('usage', () => {
      const update = (
        bucket: string,
        user: string,
        counts: Record<string, number>,
        distinct: string[] = [],
        ttlMs = MINUTE,
      ) => ({ bucket, user, counts, distinct, ttlMs });

      it('adds counters up per bucket and user, and counts distinct values once', async () => {
        await store.addUsage([
          update('usage:h:T10', 'alice', { messages: 1, bytes: 300 }, ['192.0.2.1']),
          update('usage:d:T', 'alice', { messages: 1, bytes: 300 }, ['192.0.2.1']),
          update('usage:h:T10', 'bob', { 'rej:rate_limited': 1 }),
        ]);
        await store.addUsage([
          update('usage:h:T10', 'alice', { messages: 2, recipients: 5 }, ['192.0.2.1', '192.0.2.2']),
        ]);
        assert.deepEqual(await store.readUsage(['usage:h:T10']), [
          {
            bucket: 'usage:h:T10',
            user: 'alice',
            counts: { messages: 3, bytes: 300, recipients: 5 },
            distinct: 2,
          },
          { bucket: 'usage:h:T10', user: 'bob', counts: { 'rej:rate_limited': 1 }, distinct: 0 },
        ]);
        assert.deepEqual(await store.readUsage(['usage:d:T', 'usage:h:T10'], ['alice']), [
          { bucket: 'usage:d:T', user: 'alice', counts: { messages: 1, bytes: 300 }, distinct: 1 },
          {
            bucket: 'usage:h:T10',
            user: 'alice',
            counts: { messages: 3, bytes: 300, recipients: 5 },
            distinct: 2,
          },
        ]);
      });

      it('reads nothing for buckets or users without usage', async () => {
        await store.addUsage([update('usage:h:T11', 'carol', { messages: 1 })]);
        assert.deepEqual(await store.readUsage([]), []);
        assert.deepEqual(await store.readUsage(['usage:h:T12']), []);
        assert.deepEqual(await store.readUsage(['usage:h:T11'], ['dave', 'erin']), []);
        await store.addUsage([]);
      });

      it('counts a dozen client IPs exactly', async () => {
        const ips = Array.from({ length: 12 }, (_, i) => `198.51.100.${i + 1}`);
        await store.addUsage([update('usage:h:T13', 'erin', { auths: 12 }, ips)]);
        await store.addUsage([update('usage:h:T13', 'erin', { auths: 1 }, ips.slice(0, 3))]);
        const [row] = await store.readUsage(['usage:h:T13'], ['erin']);
        assert.equal(row?.distinct, 12);
        assert.equal(row?.counts.auths, 13);
      });

      it('forgets a bucket after its lifetime', async () => {
        await store.addUsage([update('usage:h:T14', 'frank', { messages: 1 }, ['192.0.2.9'], 200)]);
        assert.equal((await store.readUsage(['usage:h:T14'])).length, 1);
        await afterTtl(
          200,
          'the bucket to expire',
          async () => (await store.readUsage(['usage:h:T14'])).length === 0,
        );
      });
    });

    describe('expiring maps', () => {
      it('sets, keeps with onlyIfAbsent, lists live fields in expiry order, deletes', async () => {
        assert.equal(await store.mapPut('abuse:flags', 'alice:many_ips', '{"n":12}', MINUTE, T, true), true);
        assert.equal(
          await store.mapPut('abuse:flags', 'alice:many_ips', '{"n":13}', MINUTE, T + 1, true),
          false,
        );
        assert.equal(await store.mapPut('abuse:flags', 'bob:volume', 'v', 30_000, T, true), true);
        assert.deepEqual(await store.mapEntries('abuse:flags', T + 10), [
          { field: 'bob:volume', value: 'v', expiresAt: T + 30_000 },
          { field: 'alice:many_ips', value: '{"n":12}', expiresAt: T + MINUTE },
        ]);
        // without onlyIfAbsent the field is replaced and its expiry renewed
        assert.equal(await store.mapPut('abuse:flags', 'bob:volume', 'w', MINUTE, T + 1000, false), true);
        assert.deepEqual(await store.mapEntries('abuse:flags', T + 1000), [
          { field: 'alice:many_ips', value: '{"n":12}', expiresAt: T + MINUTE },
          { field: 'bob:volume', value: 'w', expiresAt: T + 1000 + MINUTE },
        ]);
        assert.deepEqual(await store.mapGet('abuse:flags', 'alice:many_ips', T + 1000), {
          field: 'alice:many_ips',
          value: '{"n":12}',
          expiresAt: T + MINUTE,
        });
        assert.equal(await store.mapGet('abuse:flags', 'alice:many_ips', T + MINUTE), null, 'expired');
        assert.equal(await store.mapGet('abuse:flags', 'nobody', T), null);
        assert.equal(await store.mapGet('abuse:none', 'x', T), null);
        assert.equal(await store.mapDelete('abuse:flags', 'alice:many_ips'), true);
        assert.equal(await store.mapDelete('abuse:flags', 'alice:many_ips'), false);
        assert.equal(await store.mapGet('abuse:flags', 'alice:many_ips', T + 1000), null, 'deleted');
        assert.equal(await store.mapDelete('abuse:none', 'x'), false);
        assert.deepEqual(
          (await store.mapEntries('abuse:flags', T + 1000)).map((e) => e.field),
          ['bob:volume'],
        );
        assert.deepEqual(await store.mapEntries('abuse:none', T), []);
      });

      it('reads several fields in one call, each in its place, null where not live', async () => {
        await store.mapPut('suppression:recipients', 'gone@one.test', 'g', MINUTE, T, false);
        await store.mapPut('suppression:recipients', 'old@one.test', 'o', 1000, T, false);
        assert.deepEqual(
          await store.mapGetMany(
            'suppression:recipients',
            ['nobody@one.test', 'gone@one.test', 'old@one.test'],
            T + 1000,
          ),
          [null, { field: 'gone@one.test', value: 'g', expiresAt: T + MINUTE }, null],
        );
        assert.deepEqual(await store.mapGetMany('suppression:none', ['x', 'y'], T), [null, null]);
        assert.deepEqual(await store.mapGetMany('suppression:recipients', [], T), []);
      });

      it('drops fields at their expiry; an expired field may be set again', async () => {
        await store.mapPut('abuse:suspended', 'carol', 'x', 1000, T, true);
        await store.mapPut('abuse:suspended', 'dave', 'y', 5000, T, true);
        assert.deepEqual(
          (await store.mapEntries('abuse:suspended', T + 999)).map((e) => e.field),
          ['carol', 'dave'],
        );
        assert.deepEqual(
          (await store.mapEntries('abuse:suspended', T + 1000)).map((e) => e.field),
          ['dave'],
        );
        assert.equal(await store.mapPut('abuse:suspended', 'carol', 'z', 1000, T + 2000, true), true);
        assert.deepEqual(await store.mapEntries('abuse:suspended', T + 2500), [
          { field: 'carol', value: 'z', expiresAt: T + 3000 },
          { field: 'dave', value: 'y', expiresAt: T + 5000 },
        ]);
      });
    });

    describe('cache', () => {
      it('returns what was set until it expires', async () => {
        assert.equal(await store.getCache('dnsbl:xbl:192.0.2.1'), null);
        await store.setCache('dnsbl:xbl:192.0.2.1', '127.0.0.4', MINUTE);
        assert.equal(await store.getCache('dnsbl:xbl:192.0.2.1'), '127.0.0.4');
        await store.setCache('dnsbl:xbl:192.0.2.1', 'none', MINUTE);
        assert.equal(await store.getCache('dnsbl:xbl:192.0.2.1'), 'none');
        await store.setCache('dnsbl:xbl:192.0.2.2', 'none', 200);
        assert.equal(await store.getCache('dnsbl:xbl:192.0.2.2'), 'none');
        await afterTtl(
          200,
          'the entry to expire',
          async () => (await store.getCache('dnsbl:xbl:192.0.2.2')) === null,
        );
        assert.equal(await store.getCache('dnsbl:xbl:192.0.2.1'), 'none');
      });
    });
  });
}
