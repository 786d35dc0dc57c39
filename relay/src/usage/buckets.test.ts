import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bucketName, bucketStart, bucketStarts, parseBucketName, previousBuckets } from './buckets.ts';

const T = Date.parse('2025-07-01T10:42:17.123Z');

describe('usage buckets', () => {
  it('puts a moment in its UTC hour and day', () => {
    assert.equal(new Date(bucketStart(T, 'hour')).toISOString(), '2025-07-01T10:00:00.000Z');
    assert.equal(new Date(bucketStart(T, 'day')).toISOString(), '2025-07-01T00:00:00.000Z');
  });

  it('names buckets readably and parses the names back', () => {
    assert.equal(bucketName('hour', bucketStart(T, 'hour')), 'usage:h:2025-07-01T10');
    assert.equal(bucketName('day', bucketStart(T, 'day')), 'usage:d:2025-07-01');
    assert.deepEqual(parseBucketName('usage:h:2025-07-01T10'), {
      period: 'hour',
      start: Date.parse('2025-07-01T10:00:00Z'),
    });
    assert.deepEqual(parseBucketName('usage:d:2025-07-01'), {
      period: 'day',
      start: Date.parse('2025-07-01T00:00:00Z'),
    });
    assert.equal(parseBucketName('usage:x:2025'), undefined);
  });

  it('lists the buckets of a range and the ones before a moment', () => {
    const hours = bucketStarts('hour', T - 2 * 3_600_000, T).map((t) => bucketName('hour', t));
    assert.deepEqual(hours, ['usage:h:2025-07-01T08', 'usage:h:2025-07-01T09', 'usage:h:2025-07-01T10']);
    const days = bucketStarts('day', Date.parse('2025-06-30T23:59:59Z'), T).map((t) => bucketName('day', t));
    assert.deepEqual(days, ['usage:d:2025-06-30', 'usage:d:2025-07-01']);
    const before = previousBuckets(T, 'hour', 24);
    assert.equal(before.length, 24);
    assert.equal(bucketName('hour', before[0] ?? 0), 'usage:h:2025-06-30T10');
    assert.equal(bucketName('hour', before[23] ?? 0), 'usage:h:2025-07-01T09');
  });
});
