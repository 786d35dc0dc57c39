// The pure side of shaping: which group a domain's MX hosts belong to (KumoMTA's shipped
// groups by default), what a throttling reply does, and the limits in force.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import { fromReply } from './delivery-results.ts';
import { classifyResult } from './reply-class.ts';
import { effectiveLimits, groupOf, rateWindow, throttleFor } from './shaping.ts';

const config = validateRelayConfig(
  { hostname: 'relay.test', listeners: [{ name: 'l', port: 0 }], spoolDir: '/tmp/s', usersFile: '/tmp/u' },
  'test',
).shaping;

describe('groupOf', () => {
  it("puts real providers' MX hosts in KumoMTA's groups, with their limits", () => {
    const group = (mx: string) => {
      const g = groupOf([mx], config);
      assert.equal(g.connectionsPerMinute, 100, "KumoMTA's default max_connection_rate");
      return [g.group, g.connections, g.messagesPerConnection, g.messagesPerSecond];
    };
    assert.deepEqual(group('gmail-smtp-in.l.google.com'), ['google', 5, 50, 100]);
    assert.deepEqual(group('aspmx.l.google.com.'), ['google', 5, 50, 100]);
    assert.deepEqual(group('example-com.mail.protection.outlook.com'), ['office365', 5, 50, 100]);
    assert.deepEqual(group('outlook-com.olc.protection.outlook.com'), ['outlook', 5, 50, 100]);
    assert.deepEqual(group('mta7.am0.yahoodns.net'), ['yahoo', 10, 20, 100]);
    assert.deepEqual(group('mx01.mail.icloud.com'), ['apple', 10, 5, 100]);
    assert.deepEqual(group('mx.example.net'), ['default', 10, 100, 100]);
    assert.deepEqual(group('notgoogle.com'), ['default', 10, 100, 100], 'a suffix matches at a dot');
  });

  it('takes the groups a policy configures instead', () => {
    const own = { ...config, groups: [{ name: 'corp', mxSuffixes: ['mx.corp.example'], connections: 2 }] };
    assert.deepEqual(
      [groupOf(['a.mx.corp.example'], own).group, groupOf(['a.mx.corp.example'], own).connections],
      ['corp', 2],
    );
    assert.equal(groupOf(['aspmx.l.google.com'], own).group, 'default');
  });
});

describe('throttleFor', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const result = (reply: string) => classifyResult(fromReply('a@example.net', reply, 'mx.example.net'));

  it("suspends Yahoo for two hours on [TSS04], as KumoMTA's shaping does", () => {
    const t = throttleFor(
      'yahoo',
      [
        result(
          '421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected volume or user complaints',
        ),
      ],
      5400,
      now,
    );
    assert.deepEqual([t?.action, t?.until], ['suspend', now + 7_200_000]);
  });

  it('slows a group down for slowdownSeconds on any rate-limiting reply', () => {
    const t = throttleFor(
      'google',
      [result('451 4.7.28 Gmail has detected an unusual rate of unsolicited mail')],
      5400,
      now,
    );
    assert.deepEqual([t?.action, t?.until], ['slow', now + 5_400_000]);
    const slowed = effectiveLimits(
      {
        group: 'google',
        connections: 5,
        connectionsPerMinute: 100,
        messagesPerConnection: 50,
        messagesPerSecond: 100,
      },
      t,
    );
    assert.deepEqual([slowed.connections, slowed.messagesPerSecond], [1, 1 / 60]);
    assert.deepEqual(rateWindow(slowed.messagesPerSecond), { limit: 1, windowMs: 60_000 });
    assert.deepEqual(rateWindow(100), { limit: 100, windowMs: 1000 });
  });

  it('leaves a group alone for other answers and local failures', () => {
    assert.equal(
      throttleFor('google', [result('550 5.1.1 no such user'), result('250 2.0.0 ok')], 5400, now),
      null,
    );
    const local = {
      address: 'a',
      outcome: 'deferred' as const,
      status: '4.4.1',
      response: 'rate limited',
      reason: 'connect_failed',
    };
    assert.equal(throttleFor('google', [local], 5400, now), null);
  });
});
