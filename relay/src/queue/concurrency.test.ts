import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedSemaphore, type Release } from './concurrency.ts';

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('KeyedSemaphore', () => {
  it('holds the overall and the per-key limit', async () => {
    const sem = new KeyedSemaphore(() => ({ total: 3, perKey: 2 }));
    const got: string[] = [];
    const releases: Release[] = [];
    for (const key of ['a', 'a', 'a', 'b', 'c']) {
      void sem.acquire(key).then((release) => {
        got.push(key);
        if (release) releases.push(release);
      });
    }
    await turn();
    assert.deepEqual(got, ['a', 'a', 'b'], 'third a waits for its key, c for the total');
    releases[0]!(); // an a slot frees: the oldest waiter with room is the third a
    await turn();
    assert.deepEqual(got, ['a', 'a', 'b', 'a']);
    releases[2]!(); // b frees: c gets it
    await turn();
    assert.deepEqual(got, ['a', 'a', 'b', 'a', 'c']);
    assert.equal(sem.inUse, 3);
  });

  it('lets other keys pass a key that is at its limit', async () => {
    const sem = new KeyedSemaphore(() => ({ total: 10, perKey: 1 }));
    const first = await sem.acquire('busy');
    const waiting = sem.acquire('busy');
    const other = await sem.acquire('idle');
    assert.ok(other);
    first!();
    assert.ok(await waiting);
  });

  it('releasing twice frees one slot', async () => {
    const sem = new KeyedSemaphore(() => ({ total: 1, perKey: 1 }));
    const release = await sem.acquire('a');
    release!();
    release!();
    assert.equal(sem.inUse, 0);
  });

  it('close() answers waiters and later callers with undefined', async () => {
    const sem = new KeyedSemaphore(() => ({ total: 1, perKey: 1 }));
    await sem.acquire('a');
    const waiting = sem.acquire('b');
    sem.close();
    assert.equal(await waiting, undefined);
    assert.equal(await sem.acquire('c'), undefined);
  });
});
