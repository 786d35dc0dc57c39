import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { embeddedConfig } from '../config/defaults.ts';
import { MemoryStore } from '../state/memory-store.ts';
import type { UsageUpdate } from '../state/store.ts';
import { bucketName, bucketStart } from './buckets.ts';
import { UsageRecorder } from './recorder.ts';

const NOW = Date.parse('2026-12-06T18:30:00.000Z');
const USAGE = embeddedConfig('/nonexistent').usage;

describe('UsageRecorder', () => {
  it('keeps what a failed flush held and writes it with the next one; counts every event once', async () => {
    // the real in-memory store; its first write fails as a Redis that is away would
    const store = new MemoryStore();
    let failNext = true;
    const warned: string[] = [];
    const recorder = new UsageRecorder({
      store: {
        addUsage: (updates: readonly UsageUpdate[]) => {
          if (failNext) {
            failNext = false;
            return Promise.reject(new Error('state store unavailable'));
          }
          return store.addUsage(updates);
        },
      },
      config: () => USAGE,
      now: () => NOW,
      logger: { warn: (d) => warned.push(String((d as { event?: string }).event)), info: () => {} },
    });
    recorder.accepted('alice', { recipients: 3, bytes: 1000 });
    recorder.delivery('alice', 'delivered', 'ok');
    recorder.delivery('bob', 'deferred', 'greylisted');
    await recorder.flush();
    assert.deepEqual(warned, ['usage_flush_failed']);
    // after the failure: more of the same, and a new user
    recorder.accepted('alice', { recipients: 1, bytes: 500 });
    recorder.delivery('alice', 'delivered', 'ok');
    recorder.delivery('carol', 'delivered', 'ok');
    await recorder.flush();
    // and after a flush that worked
    recorder.accepted('alice', { recipients: 2, bytes: 250 });
    await recorder.flush();

    const hour = bucketName('hour', bucketStart(NOW, 'hour'));
    const day = bucketName('day', bucketStart(NOW, 'day'));
    for (const bucket of [hour, day]) {
      const rows = await store.readUsage([bucket]);
      const byUser = Object.fromEntries(rows.map((r) => [r.user, r.counts]));
      assert.deepEqual(
        byUser,
        {
          alice: {
            messages: 3,
            recipients: 6,
            bytes: 1750,
            'out:delivered': 2,
            'out:delivered:ok': 2,
          },
          bob: { 'out:deferred': 1, 'out:deferred:greylisted': 1 },
          carol: { 'out:delivered': 1, 'out:delivered:ok': 1 },
        },
        bucket,
      );
    }
    assert.equal(recorder.pending, 0);
  });
});
