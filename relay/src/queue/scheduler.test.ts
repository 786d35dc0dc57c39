import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { newQueueId } from '../spool/queue-id.ts';
import { Scheduler } from './scheduler.ts';

/** A clock and timers that move only when the test says so. */
class FakeClock {
  now = 1_000_000;
  timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  setTimer = (fn: () => void, ms: number) => {
    const timer = { at: this.now + ms, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  };
  get armed() {
    return this.timers.filter((t) => !t.cancelled);
  }
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = this.armed.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.now = Math.max(this.now, next.at);
      next.cancelled = true;
      next.fn();
    }
    this.now = end;
  }
}

function setup() {
  const clock = new FakeClock();
  const fired: string[][] = [];
  const scheduler = new Scheduler({
    now: () => clock.now,
    setTimer: clock.setTimer,
    onDue: (ids) => fired.push(ids),
  });
  return { clock, fired, scheduler };
}

/**
 * A seeded mix of schedules, reschedules and removals of ids (due within spreadMs of now);
 * returns what should be scheduled, id → due time.
 */
function mixSchedules(
  scheduler: Scheduler,
  now: number,
  options: {
    seed: number;
    operations: number;
    ids: readonly string[];
    removeOneIn: number;
    spreadMs: number;
  },
): Map<string, number> {
  const expected = new Map<string, number>();
  let seed = options.seed;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < options.operations; i++) {
    const id = options.ids[random(options.ids.length)]!;
    if (random(options.removeOneIn) === 0) {
      scheduler.remove(id);
      expected.delete(id);
    } else {
      const at = now + 1 + random(options.spreadMs);
      scheduler.schedule(id, at);
      expected.set(id, at);
    }
  }
  return expected;
}

describe('Scheduler', () => {
  it('fires each id at its due time and not before', () => {
    const { clock, fired, scheduler } = setup();
    scheduler.schedule('b', clock.now + 2000);
    scheduler.schedule('a', clock.now + 1000);
    assert.equal(scheduler.nextDueAt(), clock.now + 1000);
    assert.equal(clock.armed.length, 1, 'one timer, for the earliest');
    clock.advance(999);
    assert.deepEqual(fired, []);
    clock.advance(1);
    assert.deepEqual(fired, [['a']]);
    assert.equal(scheduler.has('a'), false);
    assert.equal(scheduler.size, 1);
    clock.advance(1000);
    assert.deepEqual(fired, [['a'], ['b']]);
    assert.equal(scheduler.size, 0);
    assert.equal(scheduler.nextDueAt(), undefined);
    assert.equal(clock.armed.length, 0);
  });

  it('fires ids due together in one call, in order of scheduling', () => {
    const { clock, fired, scheduler } = setup();
    for (const id of ['x', 'y', 'z']) scheduler.schedule(id, clock.now + 10);
    clock.advance(10);
    assert.deepEqual(fired, [['x', 'y', 'z']]);
  });

  it('reschedules and removes', () => {
    const { clock, fired, scheduler } = setup();
    scheduler.schedule('a', clock.now + 1000);
    scheduler.schedule('b', clock.now + 500);
    scheduler.schedule('a', clock.now + 5000);
    scheduler.remove('b');
    assert.equal(scheduler.nextDueAt(), clock.now + 5000);
    assert.equal(clock.armed.length, 1);
    clock.advance(4999);
    assert.deepEqual(fired, []);
    clock.advance(1);
    assert.deepEqual(fired, [['a']]);
  });

  it('wake() fires what is already due without waiting for the timer', () => {
    const { clock, fired, scheduler } = setup();
    scheduler.schedule('now', clock.now);
    scheduler.schedule('later', clock.now + 60_000);
    scheduler.wake();
    assert.deepEqual(fired, [['now']]);
    assert.equal(scheduler.has('later'), true);
  });

  it('keeps memory bounded when one id is rescheduled many times', () => {
    const { clock, fired, scheduler } = setup();
    for (let i = 0; i < 10_000; i++) scheduler.schedule('a', clock.now + 10_000 - i);
    assert.equal(scheduler.size, 1);
    assert.equal(scheduler.nextDueAt(), clock.now + 10_001 - 10_000);
    clock.advance(1);
    assert.deepEqual(fired, [['a']]);
  });

  it('orders many ids correctly', () => {
    const { clock, fired, scheduler } = setup();
    const dues = Array.from({ length: 200 }, (_, i) => ({ id: `m${i}`, at: ((i * 7919) % 200) + 1 }));
    for (const d of dues) scheduler.schedule(d.id, clock.now + d.at);
    for (let t = 1; t <= 200; t++) clock.advance(1);
    const order = fired.flat();
    const expected = [...dues].sort((a, b) => a.at - b.at).map((d) => d.id);
    assert.deepEqual(order, expected);
  });

  it('stop() cancels the timer and nothing fires after', () => {
    const { clock, fired, scheduler } = setup();
    scheduler.schedule('a', clock.now + 10);
    scheduler.stop();
    assert.equal(clock.armed.length, 0);
    clock.advance(100);
    scheduler.wake();
    assert.deepEqual(fired, []);
  });

  it('hands out no more due ids than there is room for; the rest wait in due order, without a timer', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    let room = 3;
    const scheduler = new Scheduler({
      now: () => clock.now,
      setTimer: clock.setTimer,
      onDue: (ids) => {
        fired.push(...ids);
        room -= ids.length;
      },
      room: () => room,
    });
    // a random mix of schedules, reschedules and removals, checked against a plain map
    const ids = Array.from({ length: 500 }, (_, i) => `m${i}`);
    const expected = mixSchedules(scheduler, clock.now, {
      seed: 7,
      operations: 2000,
      ids,
      removeOneIn: 5,
      spreadMs: 1000,
    });
    assert.equal(scheduler.size, expected.size);
    for (const [id, at] of expected) assert.equal(scheduler.dueAt(id), at);
    clock.advance(2000);
    assert.equal(fired.length, 3, 'three had room');
    assert.equal(clock.armed.length, 0, 'no timer spins while there is no room');
    while (room === 0 && scheduler.size > 0) {
      room = 3;
      scheduler.wake();
    }
    const byDue = [...expected].sort((a, b) => a[1] - b[1]).map(([, at]) => at);
    assert.deepEqual(
      fired.map((id) => expected.get(id)),
      byDue,
      'every id once, in due order',
    );
    assert.equal(scheduler.size, 0);
  });

  it('keeps queue ids and ids of other forms apart, through growth, removals and moves, against a plain map', () => {
    const { clock, scheduler } = setup();
    // queue ids close together (one arrival ms apart) and a few of other forms, some of
    // them one character away from the queue id's form
    const pool = [
      ...Array.from({ length: 3000 }, (_, i) => newQueueId(1_700_000_000_000 + (i % 40))),
      'a',
      'msg-1',
      'LT3Q0Q3K0ABCDEF0123',
      'lt3q0q3k0abcdef0123',
      '000000000000000000000',
      '000000000000000000G',
    ];
    const expected = mixSchedules(scheduler, clock.now, {
      seed: 11,
      operations: 20_000,
      ids: pool,
      removeOneIn: 3,
      spreadMs: 100_000,
    });
    assert.equal(scheduler.size, expected.size);
    for (const id of pool) assert.equal(scheduler.dueAt(id), expected.get(id), id);
    assert.deepEqual(
      [...scheduler.ids()].sort(),
      [...expected.keys()].sort(),
      'ids come back as they went in',
    );
    const sorted = [...expected.keys()].sort();
    assert.deepEqual(scheduler.sortedIds(), sorted);
    assert.equal(scheduler.smallestId(), sorted[0]);
    // pages of 7 from the start and from ids in and out of the schedule, with a filter
    const keep = (id: string) => id.charCodeAt(id.length - 1) % 3 !== 0;
    for (const after of ['', sorted[5]!, sorted[sorted.length - 3]!, 'a', 'LT', '000000000000000000F']) {
      const want = sorted.filter((id) => id > after && keep(id)).slice(0, 7);
      assert.deepEqual(scheduler.smallestAfter(after, 7, keep), want, `after '${after}'`);
    }
    // every one fires once, in due order
    const fired: string[] = [];
    const drained = new Scheduler({
      now: () => clock.now,
      setTimer: clock.setTimer,
      onDue: (ids) => fired.push(...ids),
    });
    for (const [id, at] of expected) drained.schedule(id, at);
    clock.advance(200_000);
    assert.deepEqual(
      fired.map((id) => expected.get(id)),
      [...expected.values()].sort((a, b) => a - b),
    );
    assert.equal(drained.size, 0);
  });

  it('makes everything due at once in one pass, first scheduled first', () => {
    const { clock, fired, scheduler } = setup();
    const ids = Array.from({ length: 50 }, (_, i) => newQueueId(1_700_000_000_000 + i));
    // scheduled in an order of their own, due over the next hours
    const order = ids.map((_, i) => ids[(i * 17) % 50]!);
    for (const [i, id] of order.entries()) scheduler.schedule(id, clock.now + 3_600_000 + (i % 7) * 1000);
    scheduler.schedule('other', clock.now + 7_200_000);
    assert.equal(scheduler.rescheduleAll(clock.now), 51);
    assert.equal(scheduler.nextDueAt(), clock.now);
    clock.advance(0);
    assert.deepEqual(fired, [[...order, 'other']]);
  });

  it('holds a queued id in typed arrays, not as objects on the heap', () => {
    // the measure of what a queued message that is not due costs (bench/backlog.bench.ts):
    // ids of the queue's form add nothing the garbage collector walks
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const ids = Array.from({ length: 100_000 }, (_, i) => newQueueId(1_700_000_000_000 + i));
    const { clock, scheduler } = setup();
    gc();
    const before = v8.getHeapStatistics().used_heap_size;
    for (const id of ids) scheduler.schedule(id, clock.now + 3_600_000);
    ids.length = 0; // the strings themselves are the caller's
    gc();
    const perId = (v8.getHeapStatistics().used_heap_size - before) / 100_000;
    assert.ok(perId < 4, `${perId.toFixed(1)} bytes of heap a queued id`);
    assert.equal(scheduler.size, 100_000);
  });
});
