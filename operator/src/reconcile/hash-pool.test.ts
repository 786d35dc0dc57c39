import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HashPool } from './hash-pool.ts';

/** A hash function the test finishes by hand, in the order it likes. */
function manualHash() {
  const started: Array<{ password: string; finish: () => void }> = [];
  const hash = (password: string) =>
    new Promise<string>((resolve) => {
      started.push({ password, finish: () => resolve(`hash(${password})`) });
    });
  return { started, hash };
}

describe('HashPool', () => {
  it('hashes with bounded concurrency, taking policies in turn, and hands each hash over once', async () => {
    const { started, hash } = manualHash();
    const ready: string[] = [];
    const pool = new HashPool({ concurrency: 2, hash, onReady: (key) => ready.push(key) });
    for (let i = 0; i < 10; i++)
      assert.equal(pool.hashFor('ns/bulk', `u${i}`, `fp${i}`, `bulk-${i}`), undefined);
    assert.equal(pool.hashFor('ns/small', 'alice', 'fp-a', 'alice-pw'), undefined);
    assert.equal(started.length, 2, 'two at once');
    assert.equal(pool.pending('ns/bulk'), 10);

    started[0]?.finish();
    await new Promise<void>((r) => setImmediate(r));
    // the next slot goes to the other policy, not to the ninth bulk user in line
    assert.deepEqual(
      started.map((s) => s.password),
      ['bulk-0', 'bulk-1', 'alice-pw'],
    );
    started[2]?.finish();
    await new Promise<void>((r) => setImmediate(r));
    assert.ok(ready.includes('ns/small'), 'the small policy is told as soon as its hash is ready');
    assert.equal(pool.hashFor('ns/small', 'alice', 'fp-a', 'alice-pw'), 'hash(alice-pw)');
    assert.equal(pool.pending('ns/small'), 0);
    assert.equal(pool.hashFor('ns/bulk', 'u0', 'fp0', 'bulk-0'), 'hash(bulk-0)');
    assert.equal(pool.hashed, 2);
  });

  it('asks once for a password already waiting or running, and again for a new one', () => {
    const { started, hash } = manualHash();
    const pool = new HashPool({ concurrency: 1, hash, onReady: () => {} });
    pool.hashFor('ns/p', 'alice', 'fp-1', 'one');
    pool.hashFor('ns/p', 'alice', 'fp-1', 'one');
    pool.hashFor('ns/p', 'bob', 'fp-b', 'bob');
    pool.hashFor('ns/p', 'bob', 'fp-b2', 'bob-new');
    assert.equal(started.length, 1);
    assert.equal(pool.pending('ns/p'), 2, 'alice running, bob waiting with his newest password');
  });
});
