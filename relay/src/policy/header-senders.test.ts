// The header From and Sender decision, without sockets (the SMTP side is in
// smtp/header-senders.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SendersConfig, UserRecord } from '../config/schema.ts';
import { decideHeaderSenders } from './header-senders.ts';

const user = (username: string, allowedSenders?: string[]): UserRecord => ({
  username,
  passwordHash: '$scrypt$',
  suspended: false,
  ...(allowedSenders ? { allowedSenders } : {}),
});

describe('decideHeaderSenders', () => {
  it('merges entries of one domain: any entry without users opens it to all', () => {
    const senders: SendersConfig = {
      headerFrom: 'enforce',
      domains: [
        { domain: 'a.example', users: ['alice'] },
        { domain: 'A.example', users: ['bob'] },
        { domain: 'open.example', users: ['alice'] },
        { domain: 'open.example' },
      ],
    };
    const decide = (who: string, from: string) =>
      decideHeaderSenders({ from: [from], sender: [] }, user(who), senders);
    assert.deepEqual(decide('alice', 'x@a.example'), { kind: 'ok' });
    assert.deepEqual(decide('bob', 'x@a.example'), { kind: 'ok' });
    assert.deepEqual(decide('carol', 'x@a.example'), {
      kind: 'not_allowed',
      field: 'From',
      address: 'x@a.example',
    });
    assert.deepEqual(decide('carol', 'x@open.example'), { kind: 'ok' });
  });

  it('off decides nothing, not even a missing From', () => {
    assert.deepEqual(
      decideHeaderSenders({ from: [], sender: [] }, user('alice'), { headerFrom: 'off', domains: [] }),
      { kind: 'ok' },
    );
  });

  it('a user without allowedSenders gets nothing from them; patterns of the MAIL FROM kind apply', () => {
    const senders: SendersConfig = { headerFrom: 'enforce', domains: [] };
    const from = { from: ['Alice <alice@own.example>'], sender: [] };
    assert.equal(decideHeaderSenders(from, user('alice'), senders).kind, 'not_allowed');
    assert.equal(decideHeaderSenders(from, user('alice', ['@own.example']), senders).kind, 'ok');
    assert.equal(decideHeaderSenders(from, user('alice', ['alice@own.example']), senders).kind, 'ok');
  });
});
