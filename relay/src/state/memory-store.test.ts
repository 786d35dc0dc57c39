import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeContract } from '../testing/store-contract.ts';
import { waitFor } from '../testing/wait-for.ts';
import { MAX_DISTINCT_IN_MEMORY, MemoryStore } from './memory-store.ts';

storeContract('memory', async () => {
  let now = 1_000_000;
  const store = new MemoryStore({ clock: () => now });
  return {
    store,
    advance: (ms) => {
      now += ms;
    },
    cleanup: () => store.close(),
  };
});

describe('MemoryStore memory bounds', () => {
  it('sweeps expired entries of every kind', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ clock: () => now });
    try {
      for (let i = 0; i < 100; i++) {
        await store.setCache(`cache:${i}`, 'v', 100);
        await store.consume([{ key: `rate:${i}`, cost: 1, limit: 10, windowMs: 50 }], now);
        await store.acquireSlot(`conn:${i}`, 's', 1, 100, now);
        await store.recordFailure(
          [{ counterKey: `fail:${i}`, lockKey: `lock:${i}`, threshold: 1, windowMs: 50, cooldownMs: 100 }],
          now,
        );
      }
      assert.equal(store.size, 500);
      now += 100;
      store.sweep();
      assert.equal(store.size, 0);
    } finally {
      await store.close();
    }
  });

  it('sweeps on its own timer', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ clock: () => now, sweepIntervalMs: 5 });
    try {
      await store.setCache('a', 'v', 100);
      await store.setCache('b', 'v', 10_000);
      now += 100;
      await waitFor('the sweep', async () => store.size === 1);
      assert.equal(await store.getCache('b'), 'v');
    } finally {
      await store.close();
    }
  });

  it('caps the distinct values kept per usage bucket and user', async () => {
    const store = new MemoryStore();
    try {
      const distinct = Array.from(
        { length: MAX_DISTINCT_IN_MEMORY + 50 },
        (_, i) => `10.0.${i >> 8}.${i & 255}`,
      );
      await store.addUsage([
        { bucket: 'usage:h:1', user: 'a', counts: { auths: 1 }, distinct, ttlMs: 60_000 },
      ]);
      const [row] = await store.readUsage(['usage:h:1']);
      assert.equal(row?.distinct, MAX_DISTINCT_IN_MEMORY);
    } finally {
      await store.close();
    }
  });

  it('evicts the oldest entries beyond the size cap', async () => {
    const store = new MemoryStore({ maxEntries: 10 });
    try {
      for (let i = 0; i < 25; i++) await store.setCache(`k${i}`, String(i), 60_000);
      assert.equal(store.size, 10);
      assert.equal(await store.getCache('k14'), null);
      assert.equal(await store.getCache('k15'), '15');
      assert.equal(await store.getCache('k24'), '24');
    } finally {
      await store.close();
    }
  });
});
