import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AbuseThresholds,
  detectAbuse,
  lastHour,
  median,
  needsHistory,
  type UserHours,
} from './detect.ts';

const T: AbuseThresholds = {
  volumeFactor: 10,
  volumeFloor: 100,
  maxClientIps: 10,
  rejectRatio: 0.5,
  minAttempts: 20,
  invalidRecipientRatio: 0.1,
  spamBlockRatio: 0.1,
  shareJumpFactor: 2,
};
const quiet = { messages: 0, rejected: 0, distinctClientIps: 1 };

function hours(extra: Partial<UserHours>): UserHours {
  return { user: 'alice', current: quiet, previous: quiet, elapsed: 0.5, history: [], ...extra };
}

describe('abuse detection', () => {
  it('estimates the last 60 minutes from the current and the overlapping part of the previous hour', () => {
    assert.equal(lastHour(10, 100, 0.25), 85);
    assert.equal(lastHour(10, 100, 1), 10);
    assert.equal(lastHour(10, 100, 0), 110);
  });

  it('takes the median of the baseline', () => {
    assert.equal(median([]), 0);
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([1, 2, 3, 100]), 2.5);
  });

  it('flags a volume far above the own baseline, and only above the floor', () => {
    const history = Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? 10 : 12));
    const spike = detectAbuse(hours({ current: { ...quiet, messages: 150 }, elapsed: 1, history }), T);
    assert.deepEqual(
      spike.map((f) => [f.kind, f.reason, f.numbers.messages, f.numbers.baselineMedian]),
      [['volume_spike', 'VolumeSpike', 150, 11]],
    );
    assert.match(
      spike[0]?.message ?? '',
      /^150 messages in the last hour, over 10× the median of the 24 hours before \(11\)$/,
    );
    // 10× is not "over" 10×
    assert.deepEqual(
      detectAbuse(hours({ current: { ...quiet, messages: 110 }, elapsed: 1, history }), T),
      [],
    );
    // a new account with no history is flagged only from the floor on
    assert.deepEqual(detectAbuse(hours({ current: { ...quiet, messages: 99 }, elapsed: 1 }), T), []);
    assert.equal(detectAbuse(hours({ current: { ...quiet, messages: 100 }, elapsed: 1 }), T).length, 1);
    // a steady high-volume account is not a spike
    const busy = Array.from({ length: 24 }, () => 400);
    assert.deepEqual(
      detectAbuse(hours({ current: { ...quiet, messages: 500 }, elapsed: 1, history: busy }), T),
      [],
    );
  });

  it('counts the overlapping part of the previous hour into the volume', () => {
    // 40 now, 200 in the previous hour of which 3/4 still overlaps: 190 in the last 60 min
    const h = hours({
      current: { ...quiet, messages: 40 },
      previous: { ...quiet, messages: 200 },
      elapsed: 0.25,
    });
    assert.equal(needsHistory(h, T), true);
    assert.equal(detectAbuse({ ...h, history: [1, 1, 1] }, T)[0]?.numbers.messages, 190);
  });

  it('flags more distinct client IPs than allowed in the current hour', () => {
    const f = detectAbuse(hours({ current: { ...quiet, distinctClientIps: 11 } }), T);
    assert.deepEqual(
      f.map((x) => [x.kind, x.reason, x.numbers.distinctClientIps]),
      [['many_client_ips', 'ManyClientIps', 11]],
    );
    assert.deepEqual(detectAbuse(hours({ current: { ...quiet, distinctClientIps: 10 } }), T), []);
  });

  it('flags mostly refused mail once there are enough attempts', () => {
    const f = detectAbuse(hours({ current: { ...quiet, messages: 9, rejected: 11 }, elapsed: 1 }), T);
    assert.deepEqual(
      f.map((x) => [x.kind, x.numbers.rejected, x.numbers.attempts, x.numbers.ratio]),
      [['mostly_rejected', 11, 20, 0.55]],
    );
    assert.match(f[0]?.message ?? '', /^11 of 20 transactions refused in the last hour \(more than 50 %\)$/);
    assert.deepEqual(
      detectAbuse(hours({ current: { ...quiet, messages: 8, rejected: 11 }, elapsed: 1 }), T),
      [],
    );
    assert.deepEqual(
      detectAbuse(hours({ current: { ...quiet, messages: 10, rejected: 10 }, elapsed: 1 }), T),
      [],
    );
  });

  it('flags a jump in the share of recipients bouncing as invalid or blocked as spam', () => {
    const bounces = { ...quiet, deliveries: 40, invalidRecipients: 9, spamBlocks: 5 };
    const f = detectAbuse(hours({ current: bounces, elapsed: 1 }), T);
    assert.deepEqual(
      f.map((x) => [x.kind, x.reason, x.numbers.ratio]),
      [
        ['invalid_recipients', 'InvalidRecipients', 0.225],
        ['spam_blocked', 'SpamBlocked', 0.125],
      ],
    );
    assert.match(
      f[0]?.message ?? '',
      /^9 of 40 recipients in the last hour bounced as invalid recipients \(more than 10 %\)$/,
    );
    // at the share, or under minAttempts, is no flag
    assert.deepEqual(
      detectAbuse(
        hours({ current: { ...quiet, deliveries: 40, invalidRecipients: 4, spamBlocks: 4 }, elapsed: 1 }),
        T,
      ),
      [],
    );
    assert.deepEqual(
      detectAbuse(hours({ current: { ...quiet, deliveries: 19, invalidRecipients: 19 }, elapsed: 1 }), T),
      [],
    );
  });

  it("judges a bounce share against the user's own share of the hours before: a jump, not a list that always bounces", () => {
    const now = { ...quiet, deliveries: 40, invalidRecipients: 9 };
    assert.equal(
      needsHistory(hours({ current: now, elapsed: 1 }), T),
      true,
      'over the ratio: the history is read',
    );
    // a newsletter list that has bounced 15 % for a day: 22.5 % is not twice that
    const steady = { deliveries: 2000, invalidRecipients: 300, spamBlocks: 0 };
    assert.deepEqual(detectAbuse(hours({ current: now, elapsed: 1, bounceHistory: steady }), T), []);
    // a user whose mail bounced 2 % before: 22.5 % is a jump
    const clean = { deliveries: 2000, invalidRecipients: 40, spamBlocks: 0 };
    const [jump] = detectAbuse(hours({ current: now, elapsed: 1, bounceHistory: clean }), T);
    assert.deepEqual(
      [jump?.kind, jump?.numbers.ratio, jump?.numbers.usualRatio],
      ['invalid_recipients', 0.225, 0.02],
    );
    assert.match(
      jump?.message ?? '',
      /^9 of 40 recipients in the last hour bounced as invalid recipients \(more than 10 %, and over 2× the user's 2 % of the hours before\)$/,
    );
    // factor 0: the ratio alone, whatever the history
    assert.equal(
      detectAbuse(hours({ current: now, elapsed: 1, bounceHistory: steady }), { ...T, shareJumpFactor: 0 })
        .length,
      1,
    );
    // under the ratio the history is not read at all
    assert.equal(
      needsHistory(hours({ current: { ...quiet, deliveries: 40, invalidRecipients: 4 }, elapsed: 1 }), T),
      false,
    );
  });
});
