import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DestinationPolicy } from '../net/destination-policy.ts';
import type { HostAddresses } from './mx-resolver.ts';
import { planTargets } from './mx-targets.ts';

const policy = new DestinationPolicy({ allowLocalAddresses: false });
const addresses = (...list: string[]): HostAddresses => ({ kind: 'addresses', addresses: list });
const host = (exchange: string, priority: number, answer: HostAddresses) => ({
  host: { exchange, priority },
  answer,
});

describe('planTargets', () => {
  it('keeps the allowed addresses of each host, in order, and lists the refused ones', () => {
    const plan = planTargets(
      'example.test',
      [
        host('mx1.example.test', 10, addresses('10.0.0.1', '::1')),
        host('mx2.example.test', 20, addresses('192.0.2.1', '8.8.8.8', '2001:4860:4860::8888')),
      ],
      policy,
    );
    assert.equal(plan.kind, 'targets');
    assert.deepEqual(plan.kind === 'targets' ? plan.targets : [], [
      { exchange: 'mx2.example.test', priority: 20, A: ['8.8.8.8'], AAAA: ['2001:4860:4860::8888'] },
    ]);
    assert.deepEqual(
      plan.refused.map((r) => `${r.host} ${r.address} ${r.range}`),
      [
        'mx1.example.test 10.0.0.1 private',
        'mx1.example.test ::1 loopback',
        'mx2.example.test 192.0.2.1 reserved',
      ],
    );
  });

  it('bounces 5.4.4 when every address is refused, and defers 4.4.3 when a lookup failed', () => {
    const refused = planTargets(
      'example.test',
      [host('mx.example.test', 10, addresses('127.0.0.1'))],
      policy,
    );
    assert.deepEqual(refused.kind === 'failed' ? [refused.failure.outcome, refused.failure.status] : [], [
      'bounced',
      '5.4.4',
    ]);
    const flaky = planTargets(
      'example.test',
      [
        host('mx1.example.test', 10, { kind: 'temporary', reason: 'DNS A/AAAA lookup timed out' }),
        host('mx2.example.test', 20, addresses('127.0.0.1')),
      ],
      policy,
    );
    assert.deepEqual(flaky.kind === 'failed' ? [flaky.failure.outcome, flaky.failure.status] : [], [
      'deferred',
      '4.4.3',
    ]);
  });

  it('defers 4.4.4 when the MX hosts have no address at all', () => {
    const plan = planTargets('example.test', [host('mx.example.test', 10, addresses())], policy);
    assert.deepEqual(
      plan.kind === 'failed' ? [plan.failure.outcome, plan.failure.status, plan.failure.reason] : [],
      ['deferred', '4.4.4', 'no_usable_mx'],
    );
  });
});
