import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { hashPassword, verifyPassword } from './password.ts';
import { VerifyCache } from './verify-cache.ts';

const TTL_MS = 60_000;

// The slow path is the real verifyPassword; the wrapper only counts how often it runs.
function counting() {
  const counter = { calls: 0 };
  const verify = (plain: string, stored: string): Promise<boolean> => {
    counter.calls++;
    return verifyPassword(plain, stored);
  };
  return { counter, verify };
}

function manualClock(start = 1_000) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

describe('VerifyCache', () => {
  let oldHash = '';
  let newHash = '';
  before(async () => {
    oldHash = await hashPassword('old-password');
    newHash = await hashPassword('new-password', { scheme: 'argon2id' });
  });

  it('answers a repeated success from the cache', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(counter.calls, 1);
    assert.deepEqual(cache.stats, { hits: 2, coalesced: 0, verifications: 1 });
    assert.equal(cache.size, 1);
  });

  it('never caches a wrong password', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    assert.equal(await cache.verify('alice', oldHash, 'guess'), false);
    assert.equal(await cache.verify('alice', oldHash, 'guess'), false);
    assert.equal(counter.calls, 2);
    assert.equal(cache.size, 0);
    // A cached success for the right password does not make a wrong one pass either.
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(await cache.verify('alice', oldHash, 'guess'), false);
    assert.equal(counter.calls, 4);
  });

  it('is invalidated by a password change (a new stored hash)', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(await cache.verify('alice', newHash, 'old-password'), false);
    assert.equal(counter.calls, 2);
    assert.equal(await cache.verify('alice', newHash, 'new-password'), true);
    assert.equal(await cache.verify('alice', newHash, 'new-password'), true);
    assert.equal(counter.calls, 3);
  });

  it('keys entries by username too', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(await cache.verify('bob', oldHash, 'old-password'), true);
    assert.equal(counter.calls, 2);
  });

  it('expires entries after the TTL on the injected clock', async () => {
    const { counter, verify } = counting();
    const clock = manualClock(0); // a clock starting at 0 must work too
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: clock.now, verify });
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    clock.t += TTL_MS - 1;
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(counter.calls, 1, 'still cached 1 ms before expiry');
    clock.t += 1;
    assert.equal(await cache.verify('alice', oldHash, 'old-password'), true);
    assert.equal(counter.calls, 2, 'verified again once the TTL has passed');
  });

  it('holds at most maxEntries, evicting the least recently used', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, maxEntries: 2, now: manualClock().now, verify });
    for (const user of ['u1', 'u2', 'u3']) await cache.verify(user, newHash, 'new-password');
    assert.equal(cache.size, 2);
    assert.equal(counter.calls, 3);
    await cache.verify('u3', newHash, 'new-password');
    assert.equal(counter.calls, 3, 'u3 is cached');
    await cache.verify('u1', newHash, 'new-password');
    assert.equal(counter.calls, 4, 'u1 was evicted');
  });

  it('coalesces concurrent verifications of the same key', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    const results = await Promise.all(
      Array.from({ length: 10 }, () => cache.verify('alice', oldHash, 'old-password')),
    );
    assert.deepEqual(results, Array(10).fill(true));
    assert.equal(counter.calls, 1);
    assert.deepEqual(cache.stats, { hits: 0, coalesced: 9, verifications: 1 });
  });

  it('coalesces concurrent wrong guesses without caching them', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    const results = await Promise.all(
      Array.from({ length: 10 }, () => cache.verify('alice', oldHash, 'guess')),
    );
    assert.deepEqual(results, Array(10).fill(false));
    assert.equal(counter.calls, 1);
    assert.equal(await cache.verify('alice', oldHash, 'guess'), false);
    assert.equal(counter.calls, 2);
  });

  it('passes a malformed-hash error to every waiter and does not keep it', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: TTL_MS, now: manualClock().now, verify });
    const bad = '$scrypt$ln=15,r=8$c2FsdHNhbHQ$c2FsdHNhbHRzYWx0c2FsdA';
    const outcomes = await Promise.allSettled([cache.verify('a', bad, 'x'), cache.verify('a', bad, 'x')]);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.ok(isSluiceError(outcome.reason, 'SLUICE_ERR_PASSWORD_HASH'));
    }
    await assert.rejects(cache.verify('a', bad, 'x'), (err: unknown) => isSluiceError(err));
    assert.equal(counter.calls, 2);
  });

  it('with ttlMs 0 caches nothing but still coalesces', async () => {
    const { counter, verify } = counting();
    const cache = new VerifyCache({ ttlMs: 0, verify });
    await Promise.all([
      cache.verify('alice', newHash, 'new-password'),
      cache.verify('alice', newHash, 'new-password'),
    ]);
    assert.equal(counter.calls, 1);
    assert.equal(await cache.verify('alice', newHash, 'new-password'), true);
    assert.equal(counter.calls, 2);
    assert.equal(cache.size, 0);
  });

  it('rejects nonsensical options', () => {
    assert.throws(() => new VerifyCache({ ttlMs: -1 }), RangeError);
    assert.throws(() => new VerifyCache({ ttlMs: 1.5 }), RangeError);
    assert.throws(() => new VerifyCache({ ttlMs: 1000, maxEntries: 0 }), RangeError);
  });
});
