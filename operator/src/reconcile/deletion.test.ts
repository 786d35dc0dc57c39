import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drainVerdict } from './deletion.ts';

const DEADLINE = Date.parse('2026-01-01T00:15:00.000Z');
const BEFORE = DEADLINE - 60_000;

describe('a deleted policy and its queues', () => {
  it('goes once every pod answers with an empty queue', () => {
    const v = drainVerdict([0, 0], BEFORE, DEADLINE);
    assert.deepEqual([v.done, v.reason], [true, 'QueuesDrained']);
    assert.deepEqual([drainVerdict([], BEFORE, DEADLINE).reason], ['QueuesDrained']);
  });

  it('waits while mail is queued or a pod does not answer, saying until when', () => {
    const v = drainVerdict([2, 1], BEFORE, DEADLINE);
    assert.equal(v.done, false);
    assert.equal(v.reason, 'WaitingForQueues');
    assert.match(v.message, /3 messages queued; .* or 2026-01-01T00:15:00\.000Z/);
    const silent = drainVerdict([0, undefined], BEFORE, DEADLINE);
    assert.equal(silent.done, false);
    assert.match(silent.message, /0 messages queued, 1 of 2 pods not answering/);
  });

  it('goes at the deadline with a warning of the mail still queued', () => {
    const v = drainVerdict([4, undefined], DEADLINE, DEADLINE);
    assert.equal(v.done, true);
    assert.equal(v.reason, 'QueueDeadlinePassed');
    assert.match(v.message, /with 4 messages queued, 1 of 2 pods not answering: that mail is lost/);
  });
});
