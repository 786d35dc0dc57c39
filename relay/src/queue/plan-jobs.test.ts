import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { T0, testConfig, testEnvelope } from '../testing/queue-kit.ts';
import { planJobs } from './plan-jobs.ts';

describe('planJobs', () => {
  it('makes one job per recipient domain (case-insensitive) with only the open recipients', () => {
    const envelope = testEnvelope(
      'Q',
      ['a@One.test', 'b@two.test', 'c@one.TEST', 'd@two.test', 'a@One.test'],
      T0,
    );
    envelope.recipients[3]!.state = 'delivered';
    envelope.recipients[1]!.state = 'deferred';
    const jobs = planJobs(envelope, testConfig('/tmp/x').delivery, '/spool/Q.eml');
    assert.deepEqual(
      jobs.map((j) => [j.domain, j.recipients]),
      [
        ['one.test', ['a@One.test', 'c@one.TEST']],
        ['two.test', ['b@two.test']],
      ],
    );
    const [first] = jobs;
    assert.deepEqual(
      [first?.queueId, first?.sender, first?.bodyPath, first?.size],
      ['Q', 'alice@example.com', '/spool/Q.eml', 4],
    );
  });

  it('hands everything to the smarthost in one job', () => {
    const config = testConfig('/tmp/x', {
      mode: 'smarthost',
      smarthost: { host: 'smarthost.test', port: 587, tls: 'starttls', rejectUnauthorized: true },
    });
    const envelope = testEnvelope('Q', ['a@one.test', 'b@two.test', 'c@one.test'], T0);
    assert.deepEqual(
      planJobs(envelope, config.delivery, '/spool/Q.eml').map((j) => [j.domain, j.recipients]),
      [['smarthost.test', ['a@one.test', 'b@two.test', 'c@one.test']]],
    );
  });

  it('makes no job when nobody is owed the message', () => {
    const envelope = testEnvelope('Q', ['a@one.test'], T0);
    envelope.recipients[0]!.state = 'bounced';
    assert.deepEqual(planJobs(envelope, testConfig('/tmp/x').delivery, '/spool/Q.eml'), []);
  });
});
