import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import { mailRules, messageAndRecipientRules, recipientRules, waitText, windowName } from './rate-rules.ts';

const config = validateRelayConfig(
  {
    listeners: [{ name: 'a', port: 0 }],
    spoolDir: 's',
    usersFile: 'u',
    rateLimits: { perIp: [{ what: 'messages', limit: 100, windowSeconds: 60 }] },
  },
  'test',
);
const user = { username: 'alice', passwordHash: '$scrypt$x', suspended: false };

describe('rate rules', () => {
  it('only reads message and recipient allowances at MAIL FROM', () => {
    const rules = mailRules(config, user, '192.0.2.1');
    assert.deepEqual(
      rules.map((r) => [r.key, r.cost, r.limit, r.windowMs]),
      [
        ['rate:user:alice:messages:3600', 0, 500, 3_600_000],
        ['rate:user:alice:recipients:86400', 0, 2000, 86_400_000],
        ['rate:ip:192.0.2.1:messages:60', 0, 100, 60_000],
      ],
    );
  });
  it('counts the message and its recipients together once it is accepted', () => {
    assert.deepEqual(
      messageAndRecipientRules(config, user, '192.0.2.1', 3).map((r) => [r.key, r.cost]),
      [
        ['rate:user:alice:messages:3600', 1],
        ['rate:user:alice:recipients:86400', 3],
        ['rate:ip:192.0.2.1:messages:60', 1],
      ],
    );
  });
  it('consumes the recipients at end of DATA, with per-user overrides replacing the policy', () => {
    const own = { ...user, rateLimits: [{ what: 'recipients' as const, limit: 50, windowSeconds: 3600 }] };
    assert.deepEqual(
      recipientRules(config, own, '192.0.2.1', 7).map((r) => [r.key, r.cost, r.limit]),
      [['rate:user:alice:recipients:3600', 7, 50]],
    );
  });
  it('counts a draining pod handing its queue on by its user only, not by its pod address', () => {
    const withHandoff = validateRelayConfig(
      {
        listeners: [{ name: 'a', port: 0 }],
        spoolDir: 's',
        usersFile: 'u',
        rateLimits: { perIp: [{ what: 'messages', limit: 100, windowSeconds: 60 }] },
        drain: { handoff: { host: 'mail-smtp', port: 25, username: 'internal', passwordFile: 'p' } },
      },
      'test',
    );
    const internal = { username: 'internal', passwordHash: '$scrypt$x', suspended: false, rateLimits: [] };
    assert.deepEqual(mailRules(withHandoff, internal, '10.0.0.7'), []);
    assert.deepEqual(
      mailRules(withHandoff, user, '10.0.0.7').map((r) => r.key),
      ['rate:user:alice:messages:3600', 'rate:user:alice:recipients:86400', 'rate:ip:10.0.0.7:messages:60'],
      'every other user is still counted by address',
    );
  });
  it('words windows and waits for replies', () => {
    assert.deepEqual([3600, 86400, 900, 7200, 45].map(windowName), ['hour', 'day', '15 min', '2 h', '45 s']);
    assert.deepEqual([500, 61_000, 600_000, 10_800_000].map(waitText), ['1 s', '61 s', '10 min', '3 h']);
  });
});
