import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyUsage, UsageSource, UsageTarget } from './relay-usage.ts';
import { UsageSummaries } from './summaries.ts';

const target: UsageTarget = { namespace: 'prod', policy: 'mail', url: 'http://relay', token: 't' };
const answer = (date: string): PolicyUsage => ({
  date,
  today: new Map(),
  flags: [],
  suspended: [],
  autoSuspend: false,
});

describe('usage summaries', () => {
  it('asks the relays at most once per interval, in the background, failures included', async () => {
    let now = 0;
    let calls = 0;
    let fail = false;
    let date = 'day-1';
    const warnings: object[] = [];
    const updated: string[] = [];
    const source: UsageSource = {
      fetch: async () => {
        calls++;
        if (fail) throw new Error('connection refused');
        return answer(date);
      },
    };
    const s = new UsageSummaries({
      source,
      intervalMs: 300_000,
      now: () => now,
      log: { warn: (d) => warnings.push(d) },
      onUpdate: (key) => updated.push(key),
    });
    assert.equal(s.get('prod/mail', target), undefined, 'nothing yet: the fetch runs in the background');
    await s.idle();
    assert.deepEqual(updated, ['prod/mail'], 'the policy is queued again with the first answer');
    assert.equal(s.get('prod/mail', target)?.date, 'day-1');
    now += 299_999;
    s.get('prod/mail', target);
    assert.equal(calls, 1, 'not again within the interval');

    now += 1;
    s.get('prod/mail', target);
    await s.idle();
    assert.equal(calls, 2);
    assert.deepEqual(updated, ['prod/mail'], 'the same answer queues nothing');

    date = 'day-2';
    fail = true;
    now += 300_000;
    assert.equal(s.get('prod/mail', target)?.date, 'day-1');
    await s.idle();
    assert.equal(s.get('prod/mail', target)?.date, 'day-1', 'the last answer stands');
    now += 300_000;
    s.get('prod/mail', target);
    await s.idle();
    assert.equal(warnings.length, 1, 'one warning per outage');
    assert.equal(calls, 4);

    fail = false;
    now += 300_000;
    s.get('prod/mail', target);
    await s.idle();
    assert.equal(s.get('prod/mail', target)?.date, 'day-2');
    assert.deepEqual(updated, ['prod/mail', 'prod/mail']);
  });
});
