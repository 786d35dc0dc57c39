import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecipientResult } from '../delivery/types.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { applyResults, completeResults } from './outcomes.ts';

const retry = {
  minBackoffSeconds: 300,
  maxBackoffSeconds: 3600,
  queueLifetimeSeconds: 5 * 86400,
  delayWarningSeconds: 4 * 3600,
};
const T0 = Date.parse('2025-01-01T00:00:00Z');
const NOW = T0 + 60_000;

function envelope(recipients: SpooledEnvelope['recipients']): SpooledEnvelope {
  const receivedAt = new Date(T0).toISOString();
  return spooledEnvelope({ queueId: 'Q1', receivedAt, sender: 'a@example.com', recipients, size: 5 });
}

const ok = (address: string): RecipientResult => ({
  address,
  outcome: 'delivered',
  response: '250 2.0.0 Ok: queued',
  status: '2.0.0',
  remoteHost: 'mx.example.net',
});
const later = (address: string): RecipientResult => ({
  address,
  outcome: 'deferred',
  response: '451 4.7.1 greylisted',
  status: '4.7.1',
  remoteHost: 'mx.example.net',
});
const no = (address: string): RecipientResult => ({
  address,
  outcome: 'bounced',
  response: '550 5.1.1 no such user',
  status: '5.1.1',
  remoteHost: 'mx.example.net',
});

describe('applyResults', () => {
  it('records delivered, deferred and bounced per recipient', () => {
    const input = envelope([
      { address: 'a@x.test', state: 'pending' },
      { address: 'b@x.test', state: 'pending' },
      { address: 'c@x.test', state: 'deferred', attempts: 2, response: 'old' },
    ]);
    const {
      envelope: out,
      newlyBounced,
      done,
    } = applyResults(input, [ok('a@x.test'), no('b@x.test'), later('c@x.test')], NOW, retry);
    const [a, b, c] = out.recipients;
    assert.deepEqual(a, {
      address: 'a@x.test',
      state: 'delivered',
      attempts: 1,
      response: '250 2.0.0 Ok: queued',
      status: '2.0.0',
      class: 'accepted',
      remoteHost: 'mx.example.net',
      finishedAt: new Date(NOW).toISOString(),
    });
    assert.equal(b?.state, 'bounced');
    assert.equal(b?.status, '5.1.1');
    assert.equal(b?.class, 'invalid-recipient', 'a result without a class is classified here');
    assert.equal(c?.class, 'transient');
    assert.equal(b?.finishedAt, new Date(NOW).toISOString());
    assert.equal(c?.state, 'deferred');
    assert.equal(c?.attempts, 3);
    assert.equal(c?.response, '451 4.7.1 greylisted');
    assert.equal(c?.finishedAt, undefined);
    assert.deepEqual(
      newlyBounced.map((r) => r.address),
      ['b@x.test'],
    );
    assert.equal(done, false);
  });

  it('is done when nobody is pending or deferred', () => {
    const input = envelope([
      { address: 'a@x.test', state: 'pending' },
      { address: 'b@x.test', state: 'bounced', response: 'earlier' },
    ]);
    const { done, newlyBounced } = applyResults(input, [ok('a@x.test')], NOW, retry);
    assert.equal(done, true);
    assert.deepEqual(newlyBounced, []);
  });

  it('bounces a deferred recipient with 5.4.7 once the queue lifetime is over', () => {
    const input = envelope([{ address: 'a@x.test', state: 'deferred', attempts: 40 }]);
    const end = T0 + retry.queueLifetimeSeconds * 1000;
    const { envelope: out, newlyBounced, done } = applyResults(input, [later('a@x.test')], end, retry);
    assert.equal(out.recipients[0]?.state, 'bounced');
    assert.equal(out.recipients[0]?.status, '5.4.7');
    assert.equal(out.recipients[0]?.response, 'delivery time expired: 451 4.7.1 greylisted');
    assert.equal(newlyBounced.length, 1);
    assert.equal(done, true);
    // one millisecond earlier it is still only deferred
    const before = applyResults(input, [later('a@x.test')], end - 1, retry);
    assert.equal(before.envelope.recipients[0]?.state, 'deferred');
  });

  it('never changes a final recipient, nor one without a result', () => {
    const input = envelope([
      { address: 'a@x.test', state: 'delivered', response: '250 first' },
      { address: 'b@x.test', state: 'deferred', attempts: 1 },
    ]);
    const { envelope: out } = applyResults(input, [no('a@x.test'), ok('nobody@x.test')], NOW, retry);
    assert.deepEqual(out.recipients, input.recipients);
  });

  it('never mutates its input', () => {
    const input = envelope([
      { address: 'a@x.test', state: 'pending' },
      { address: 'b@x.test', state: 'deferred', remoteHost: 'old.mx' },
    ]);
    const copy = structuredClone(input);
    const { envelope: out, newlyBounced } = applyResults(
      input,
      [no('a@x.test'), { ...later('b@x.test'), remoteHost: undefined } as RecipientResult],
      NOW,
      retry,
    );
    assert.deepEqual(input, copy);
    assert.notEqual(out.recipients, input.recipients);
    assert.equal(out.recipients[1]?.remoteHost, undefined, 'remoteHost is the host of the last answer');
    newlyBounced[0]!.state = 'pending';
    assert.equal(out.recipients[0]?.state, 'bounced');
  });
});

describe('completeResults', () => {
  it('defers with 4.0.0 every recipient the transport gave no result for', () => {
    const results = completeResults(['a@x.test', 'b@x.test'], [ok('a@x.test')], 'local error: none');
    assert.equal(results[0]?.outcome, 'delivered');
    assert.deepEqual(results[1], {
      address: 'b@x.test',
      outcome: 'deferred',
      response: 'local error: none',
      status: '4.0.0',
    });
  });

  it('defers with 4.0.0 a recipient whose result has no known outcome, so it is never taken for done', () => {
    const odd = { ...ok('a@x.test'), outcome: 'accepted' } as unknown as RecipientResult;
    const results = completeResults(['a@x.test'], [odd], 'local error: no outcome');
    assert.deepEqual(
      results.map((r) => [r.outcome, r.status]),
      [['deferred', '4.0.0']],
    );
    const applied = applyResults(envelope([{ address: 'a@x.test', state: 'pending' }]), results, NOW, retry);
    assert.equal(applied.envelope.recipients[0]?.state, 'deferred');
    assert.equal(applied.done, false);
  });
});
