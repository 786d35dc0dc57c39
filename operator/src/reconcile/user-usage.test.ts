import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { smtpUser } from '../api/defaults.ts';
import type { PolicyUsage } from '../usage/relay-usage.ts';
import { smtpUserStatus } from './smtp-user.ts';
import { abuseCondition, userUsage, withAbuseSuspension } from './user-usage.ts';

const user = smtpUser(
  { name: 'alice', namespace: 'prod', generation: 2 },
  { username: 'alice', policyRef: { name: 'mail' }, passwordSecretRef: { name: 'alice-pw' } },
);
const active = { ok: true, reason: 'Active', message: 'The user can relay mail' };

function usage(extra: Partial<PolicyUsage> = {}): PolicyUsage {
  return {
    date: '2025-07-01',
    today: new Map([
      [
        'alice',
        {
          messages: 30,
          recipients: 41,
          bytes: 90_000,
          rejected: 2,
          authentications: 5,
          distinctClientIps: 12,
          rejections: { sender_not_allowed: 2, too_many_recipients: 1 },
        },
      ],
    ]),
    flags: [],
    suspended: [],
    autoSuspend: false,
    ...extra,
  };
}

const flag = {
  user: 'alice',
  kind: 'many_client_ips',
  reason: 'ManyClientIps',
  message: 'authenticated from 12 distinct client IPs this hour (more than 10)',
  detectedAt: '2025-07-01T10:59:00.000Z',
};
const suspension = {
  user: 'alice',
  reason: 'ManyClientIps',
  message: flag.message,
  until: '2025-07-02T10:59:00.000Z',
};

describe('SmtpUser usage and abuse status', () => {
  it("summarises today's usage, refusals as a list (a merge patch replaces it whole)", () => {
    assert.deepEqual(userUsage('alice', usage()), {
      date: '2025-07-01',
      messages: 30,
      recipients: 41,
      bytes: 90_000,
      rejected: 2,
      authentications: 5,
      distinctClientIps: 12,
      rejections: [
        { reason: 'sender_not_allowed', count: 2 },
        { reason: 'too_many_recipients', count: 1 },
      ],
      deliveries: { delivered: 0, deferred: 0, bounced: 0, classes: [] },
    });
    assert.deepEqual(userUsage('bob', usage()), {
      date: '2025-07-01',
      messages: 0,
      recipients: 0,
      bytes: 0,
      rejected: 0,
      authentications: 0,
      distinctClientIps: 0,
      rejections: [],
      deliveries: { delivered: 0, deferred: 0, bounced: 0, classes: [] },
    });
  });

  it('is AbuseSuspected True with the CamelCase reason and the numbers, else False', () => {
    assert.deepEqual(abuseCondition('alice', usage(), 2), {
      type: 'AbuseSuspected',
      status: 'False',
      reason: 'NoneDetected',
      message: 'No sign of a compromised account',
      observedGeneration: 2,
    });
    const c = abuseCondition('alice', usage({ flags: [flag] }), 2);
    assert.deepEqual([c.status, c.reason], ['True', 'ManyClientIps']);
    assert.equal(
      c.message,
      'authenticated from 12 distinct client IPs this hour (more than 10) (detected 2025-07-01T10:59:00.000Z)',
    );
    const s = abuseCondition(
      'alice',
      usage({ flags: [flag], suspended: [suspension], autoSuspend: true }),
      2,
    );
    assert.match(
      s.message,
      /; the relays refuse this user until 2025-07-02T10:59:00.000Z \(abuse.autoSuspend\)/,
    );
  });

  it('turns Ready False (AbuseSuspended) only while the relays enforce a suspension', () => {
    assert.equal(withAbuseSuspension(active, 'alice', usage({ suspended: [suspension] })), active);
    const refused = withAbuseSuspension(
      active,
      'alice',
      usage({ suspended: [suspension], autoSuspend: true }),
    );
    assert.deepEqual([refused.ok, refused.reason], [false, 'AbuseSuspended']);
    assert.equal(
      refused.message,
      `The relays refuse this user until 2025-07-02T10:59:00.000Z: ${flag.message}`,
    );
  });

  it('keeps the live AbuseSuspected condition and usage when the relays could not be asked', () => {
    const first = smtpUserStatus(user, active, undefined, 'T0', usage({ flags: [flag] }));
    assert.deepEqual(
      first.conditions.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]),
      [
        ['Ready', 'True', 'Active', 'T0'],
        ['AbuseSuspected', 'True', 'ManyClientIps', 'T0'],
      ],
    );
    assert.equal(first.usage?.messages, 30);
    const later = smtpUserStatus(user, active, first.conditions, 'T1');
    assert.deepEqual(later.conditions, first.conditions);
    assert.equal('usage' in later, false, 'a merge patch without usage leaves it as it was');
    const cleared = smtpUserStatus(user, active, first.conditions, 'T2', usage());
    assert.deepEqual(
      cleared.conditions.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]),
      [
        ['Ready', 'True', 'Active', 'T0'],
        ['AbuseSuspected', 'False', 'NoneDetected', 'T2'],
      ],
    );
  });
});
