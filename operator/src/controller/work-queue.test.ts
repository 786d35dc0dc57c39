import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from './work-queue.ts';

function fakeTimers() {
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  let now = 0;
  return {
    setTimer: (fn: () => void, ms: number) => {
      const t = { at: now + ms, fn, cancelled: false };
      timers.push(t);
      return { cancel: () => (t.cancelled = true) };
    },
    advance(ms: number) {
      now += ms;
      for (const t of timers.filter((x) => !x.cancelled && x.at <= now)) {
        t.cancelled = true;
        t.fn();
      }
    },
  };
}

describe('WorkQueue', () => {
  it('holds a key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/b');
    assert.equal(q.depth, 2);
    assert.equal(await q.get(), 'ns/a');
    assert.equal(await q.get(), 'ns/b');
  });

  it('never hands out a key twice at once; an add while processing brings it back after done', async () => {
    const q = new WorkQueue();
    q.add('k');
    const key = await q.get();
    q.add('k');
    assert.equal(q.depth, 0, 'not queued while processing');
    q.done(key ?? '');
    assert.equal(q.depth, 1);
    assert.equal(await q.get(), 'k');
  });

  it('backs off exponentially per key and forgets on success', () => {
    const timers = fakeTimers();
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000, setTimer: timers.setTimer });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => q.addRateLimited('k')),
      [100, 200, 400, 800, 1000],
    );
    q.forget('k');
    assert.equal(q.addRateLimited('k'), 100);
    assert.equal(q.depth, 0);
    timers.advance(100);
    assert.equal(q.depth, 1);
  });

  it('wakes a waiting worker, and close releases workers', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.add('x');
    assert.equal(await waiting, 'x');
    const idle = q.get();
    q.close();
    assert.equal(await idle, undefined);
  });
});
