import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { delayWarningDue, expired, retryDelayMs } from './retry-schedule.ts';

const retry = {
  minBackoffSeconds: 300,
  maxBackoffSeconds: 3600,
  queueLifetimeSeconds: 5 * 86400,
  delayWarningSeconds: 4 * 3600,
};
const T0 = Date.parse('2025-01-01T00:00:00Z');
const HOUR = 3600_000;

function envelope(extra: Partial<SpooledEnvelope> = {}): SpooledEnvelope {
  return spooledEnvelope({
    queueId: 'Q1',
    receivedAt: new Date(T0).toISOString(),
    sender: 'a@example.com',
    recipients: [
      { address: 'b@example.net', state: 'deferred' },
      { address: 'c@example.net', state: 'delivered' },
    ],
    size: 5,
    ...extra,
  });
}

describe('retryDelayMs', () => {
  it('doubles from the minimum backoff and stops at the maximum', () => {
    const seconds = [1, 2, 3, 4, 5, 6, 7].map((n) => retryDelayMs(n, retry) / 1000);
    assert.deepEqual(seconds, [300, 600, 1200, 2400, 3600, 3600, 3600]);
  });

  it('stays finite and capped for absurd attempt counts, and treats 0 as the first', () => {
    assert.equal(retryDelayMs(10_000, retry), 3600_000);
    assert.equal(retryDelayMs(0, retry), 300_000);
  });

  it('follows the configured values', () => {
    const fast = { ...retry, minBackoffSeconds: 10, maxBackoffSeconds: 25 };
    assert.deepEqual(
      [1, 2, 3].map((n) => retryDelayMs(n, fast)),
      [10_000, 20_000, 25_000],
    );
  });
});

describe('expired', () => {
  it('is true from the end of the queue lifetime on', () => {
    const lifetime = retry.queueLifetimeSeconds * 1000;
    assert.equal(expired(new Date(T0), T0 + lifetime - 1, retry), false);
    assert.equal(expired(new Date(T0), T0 + lifetime, retry), true);
  });
});

describe('delayWarningDue', () => {
  it('is due once delayWarningSeconds have passed while a recipient is deferred', () => {
    assert.equal(delayWarningDue(envelope(), T0 + 4 * HOUR - 1, retry), false);
    assert.equal(delayWarningDue(envelope(), T0 + 4 * HOUR, retry), true);
  });

  it('is sent only once', () => {
    assert.equal(delayWarningDue(envelope({ delayWarned: true }), T0 + 5 * HOUR, retry), false);
  });

  it('needs a recipient that is still deferred', () => {
    const finished = envelope({ recipients: [{ address: 'b@example.net', state: 'bounced' }] });
    assert.equal(delayWarningDue(finished, T0 + 5 * HOUR, retry), false);
  });

  it('never warns a null sender or about a DSN', () => {
    assert.equal(delayWarningDue(envelope({ sender: '' }), T0 + 5 * HOUR, retry), false);
    assert.equal(delayWarningDue(envelope({ dsn: true }), T0 + 5 * HOUR, retry), false);
  });

  it('is off with delayWarningSeconds 0', () => {
    assert.equal(delayWarningDue(envelope(), T0 + 100 * HOUR, { ...retry, delayWarningSeconds: 0 }), false);
  });
});
