import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type KeyGeneration, planRotation, type RotationInput } from './dkim-rotation.ts';

const H = 3600_000;
const gen = (selector: string, createdAt: number, extra: Partial<KeyGeneration> = {}): KeyGeneration => ({
  selector,
  secretName: `d-dkim-${selector}`,
  keys: { 'rsa-sha256': 'pem' },
  createdAt,
  ...extra,
});
const input = (over: Partial<RotationInput>): RotationInput => ({
  generations: [],
  published: new Set(),
  now: 1000 * H,
  rotationPeriodMs: 90 * 24 * H,
  retireAfterMs: 6 * 24 * H,
  selectors: ['s1', 's2'],
  algorithms: ['rsa-sha256'],
  rsaBits: 2048,
  rsaBitsOf: () => 2048,
  ...over,
});

describe('DKIM rotation', () => {
  it('makes the first key under the first selector', () => {
    assert.equal(planRotation(input({})).create, 's1');
  });

  it('keeps a key that DNS does not serve pending, and switches to it once DNS does', () => {
    const g = gen('s1', 0);
    assert.deepEqual(planRotation(input({ generations: [g] })), { retire: [], remove: [] });
    const plan = planRotation(input({ generations: [g], published: new Set([g.secretName]) }));
    assert.equal(plan.activate, g.secretName);
    assert.equal(plan.nextRotation, 1000 * H + 90 * 24 * H);
  });

  it('makes the next key under the other selector when the period is over, and retires the old one once the new is served', () => {
    const old = gen('s1', 0, { activeSince: 0 });
    const due = planRotation(input({ generations: [old], now: 90 * 24 * H }));
    assert.equal(due.create, 's2');
    const next = gen('s2', 90 * 24 * H);
    const waiting = planRotation(input({ generations: [old, next], now: 91 * 24 * H }));
    assert.equal(waiting.create, undefined, 'one rotation at a time');
    const served = planRotation(
      input({ generations: [old, next], published: new Set([next.secretName]), now: 91 * 24 * H }),
    );
    assert.equal(served.activate, next.secretName);
    assert.deepEqual(served.retire, [old.secretName]);
  });

  it('removes a replaced key only after the queue lifetime and margin', () => {
    const old = gen('s1', 0, { activeSince: 0, retiringSince: 100 * H });
    const active = gen('s2', 90 * H, { activeSince: 100 * H });
    const early = planRotation(input({ generations: [old, active], now: 100 * H + 6 * 24 * H - 1 }));
    assert.deepEqual(early.remove, []);
    assert.equal(early.dueAt, 100 * H + 6 * 24 * H);
    const late = planRotation(input({ generations: [old, active], now: 100 * H + 6 * 24 * H }));
    assert.deepEqual(late.remove, [old.secretName]);
  });

  it('waits for the other selector to be free before rotating again', () => {
    const old = gen('s1', 0, { activeSince: 0, retiringSince: 10 * H });
    const active = gen('s2', 5 * H, { activeSince: 10 * H });
    const plan = planRotation(
      input({ generations: [old, active], rotationPeriodMs: H, retireAfterMs: 100 * H, now: 20 * H }),
    );
    assert.equal(plan.create, undefined);
    assert.match(plan.waiting ?? '', /selector s1 is still held/);
  });

  it('replaces a key at once when the spec asks for other algorithms', () => {
    const active = gen('s1', 0, { activeSince: 0 });
    const plan = planRotation(
      input({ generations: [active], algorithms: ['rsa-sha256', 'ed25519-sha256'], now: H }),
    );
    assert.equal(plan.create, 's2');
  });
});
