import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideRecipient } from './recipients.ts';
import { isSenderAllowed } from './sender.ts';

describe('isSenderAllowed', () => {
  it('allows anything without a restriction', () => {
    assert.equal(isSenderAllowed('x@y.test', undefined), true);
  });
  it('matches full addresses and domains, case-insensitively', () => {
    const allowed = ['alice@Example.com', '@corp.test', 'shop.test'];
    assert.equal(isSenderAllowed('ALICE@example.COM', allowed), true);
    assert.equal(isSenderAllowed('bob@example.com', allowed), false);
    assert.equal(isSenderAllowed('anyone@CORP.test', allowed), true);
    assert.equal(isSenderAllowed('a@sub.corp.test', allowed), false);
    assert.equal(isSenderAllowed('orders@shop.test', allowed), true);
  });
  it('refuses the null sender and malformed addresses under a restriction', () => {
    assert.equal(isSenderAllowed('', ['@corp.test']), false);
    assert.equal(isSenderAllowed('corp.test', ['@corp.test']), false);
  });
});

describe('decideRecipient', () => {
  it('accepts up to the limit, then rejects or drops by mode', () => {
    const reject = { maxRecipients: 2, recipientOverflow: 'reject' as const };
    const truncate = { maxRecipients: 2, recipientOverflow: 'truncate' as const };
    assert.deepEqual(
      [0, 1, 2, 3].map((n) => decideRecipient(n, reject)),
      ['accept', 'accept', 'reject', 'reject'],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((n) => decideRecipient(n, truncate)),
      ['accept', 'accept', 'drop', 'drop'],
    );
  });
});
