// The SMTP stages' decisions without a socket: which refusal a client gets when several
// apply (the order of the checks is what a client sees), and what passes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UserRecord } from '../config/schema.ts';
import type { DnsblVerdict } from '../dnsbl/checker.ts';
import { decideAuth } from './auth-decision.ts';
import { decideConnect, decideSlot } from './connect-decision.ts';
import { decideContent } from './content-decision.ts';
import { decideDnsbl, dnsblTags } from './dnsbl-decision.ts';
import { decideMailFrom, type MailFromFacts } from './mail-decision.ts';
import { decideRcpt, type RcptFacts } from './rcpt-decision.ts';

const alice: UserRecord = {
  username: 'alice',
  passwordHash: '$scrypt$x',
  suspended: false,
  allowedSenders: ['@shop.test'],
};

describe('decideConnect and decideSlot', () => {
  it('refuses while draining before a cap, then by the cap, and opens otherwise', () => {
    const cap = 'TOO_MANY_CONNECTIONS';
    assert.deepEqual(decideConnect({ draining: true, overCap: cap }), {
      kind: 'refuse',
      refusal: 'SHUTTING_DOWN',
      cause: 'draining',
    });
    assert.deepEqual(decideConnect({ draining: false, overCap: cap }), {
      kind: 'refuse',
      refusal: cap,
      cause: 'over_cap',
    });
    assert.deepEqual(decideConnect({ draining: false, overCap: undefined }), { kind: 'open' });
  });
  it('turns the cross-pod slot into a refusal, or an open session that holds a slot', () => {
    assert.equal(decideSlot({ kind: 'rate_limited', vars: {} }).kind, 'refuse');
    assert.deepEqual(decideSlot({ kind: 'unavailable' }), {
      kind: 'refuse',
      refusal: 'STATE_TEMPFAIL_CONNECT',
    });
    assert.deepEqual(decideSlot({ kind: 'ok' }), { kind: 'open', holdsSlot: true });
  });
});

describe('decideDnsbl', () => {
  const verdict: DnsblVerdict = {
    listed: [
      { zone: 'tag.test', code: '127.0.0.2', action: 'tag', message: 'tagged' },
      { zone: 'block.test', code: '127.0.0.3', action: 'reject', message: 'listed' },
    ],
    failed: [{ zone: 'slow.test', reason: 'timeout' }],
  };
  it('rejects on the first rejecting zone, whatever failed, and tags the tagging zones', () => {
    const decision = decideDnsbl(verdict, { onError: 'tempfail' });
    assert.equal(decision.kind === 'reject' && decision.hit.zone, 'block.test');
    assert.deepEqual(
      dnsblTags(verdict).map((h) => h.zone),
      ['tag.test'],
    );
  });
  it('fails temporarily for a zone that did not answer only when onError is tempfail', () => {
    const unanswered: DnsblVerdict = { listed: [], failed: verdict.failed };
    assert.equal(decideDnsbl(unanswered, { onError: 'tempfail' }).kind, 'tempfail');
    assert.equal(decideDnsbl(unanswered, { onError: 'open' }).kind, 'pass');
  });
});

describe('decideAuth', () => {
  const ok = { ok: true as const, user: alice };
  it('refuses the handoff account from outside as a wrong password, even with the right one', () => {
    assert.deepEqual(decideAuth({ checked: ok, handoffFromOutside: true, abuseSuspended: false }), {
      kind: 'refuse',
      refusal: 'AUTH_FAILED',
      result: 'failure',
      countsFailure: true,
      cause: 'handoff_from_outside',
    });
  });
  it('refuses an abuse suspension and a suspended account without counting a failure', () => {
    const abuse = decideAuth({ checked: ok, handoffFromOutside: false, abuseSuspended: true });
    assert.equal(
      abuse.kind === 'refuse' && `${abuse.refusal} ${abuse.countsFailure} ${abuse.cause}`,
      'AUTH_SUSPENDED false abuse',
    );
    const suspended = decideAuth({
      checked: { ok: false, reason: 'auth_suspended' },
      handoffFromOutside: false,
      abuseSuspended: false,
    });
    assert.equal(
      suspended.kind === 'refuse' && `${suspended.refusal} ${suspended.countsFailure}`,
      'AUTH_SUSPENDED false',
    );
  });
  it('accepts the user, and counts a wrong password', () => {
    assert.deepEqual(decideAuth({ checked: ok, handoffFromOutside: false, abuseSuspended: false }), {
      kind: 'accept',
      user: alice,
    });
    const wrong = decideAuth({
      checked: { ok: false, reason: 'auth_failed' },
      handoffFromOutside: false,
      abuseSuspended: false,
    });
    assert.equal(wrong.kind === 'refuse' && `${wrong.refusal} ${wrong.countsFailure}`, 'AUTH_FAILED true');
  });
});

describe('decideMailFrom', () => {
  const facts: MailFromFacts = {
    sender: 'orders@shop.test',
    unsupportedParameter: undefined,
    badEnvid: undefined,
    smtpUtf8: false,
    authenticated: 'alice',
    current: alice,
    abuseSuspended: false,
    spoolRoom: true,
  };
  const refusal = (f: Partial<MailFromFacts>) => {
    const d = decideMailFrom({ ...facts, ...f });
    return d.kind === 'refuse' ? d.refusal : d.kind;
  };
  it('checks the command before the account, the account before the sender, the sender before the spool', () => {
    const everything: Partial<MailFromFacts> = {
      unsupportedParameter: 'FOO',
      badEnvid: 'not printable ASCII',
      sender: 'ü@other.test',
      authenticated: undefined,
      spoolRoom: false,
    };
    assert.equal(refusal(everything), 'UNSUPPORTED_PARAMETER');
    assert.equal(refusal({ ...everything, unsupportedParameter: undefined }), 'INVALID_PARAMETER');
    assert.equal(
      refusal({ ...everything, unsupportedParameter: undefined, badEnvid: undefined }),
      'SMTPUTF8_REQUIRED',
    );
    assert.equal(
      refusal({ sender: 'a@other.test', authenticated: undefined, spoolRoom: false }),
      'AUTH_REQUIRED',
    );
    assert.equal(
      refusal({ sender: 'a@other.test', current: undefined, spoolRoom: false }),
      'ACCOUNT_DISABLED',
    );
    assert.equal(refusal({ sender: 'a@other.test', abuseSuspended: true }), 'ACCOUNT_DISABLED');
    assert.equal(refusal({ sender: 'a@other.test', spoolRoom: false }), 'SENDER_NOT_ALLOWED');
    assert.equal(refusal({ spoolRoom: false }), 'INSUFFICIENT_STORAGE');
    assert.equal(refusal({}), 'accept');
  });
  it('names the sender in the reply and keeps the current record once the account passed', () => {
    const d = decideMailFrom({ ...facts, sender: 'a@other.test' });
    assert.deepEqual(d, {
      kind: 'refuse',
      refusal: 'SENDER_NOT_ALLOWED',
      vars: { sender: 'a@other.test', user: 'alice' },
      fields: { sender: 'a@other.test' },
      user: alice,
    });
  });
});

describe('decideRcpt', () => {
  const facts: RcptFacts = {
    recipient: 'bob@one.test',
    unsupportedParameter: undefined,
    badOrcpt: undefined,
    smtpUtf8: false,
    accepted: [],
    limits: { maxRecipients: 2, recipientOverflow: 'reject' },
    allowance: 10,
  };
  const kind = (f: Partial<RcptFacts>) => {
    const d = decideRcpt({ ...facts, ...f });
    return d.kind === 'refuse' ? d.refusal : d.kind;
  };
  it('checks parameters first, takes a repeated recipient once, then the limit and the allowance', () => {
    assert.equal(kind({ unsupportedParameter: 'FOO', recipient: 'ü@one.test' }), 'UNSUPPORTED_PARAMETER');
    assert.equal(kind({ recipient: 'ü@one.test', badOrcpt: 'too long' }), 'SMTPUTF8_REQUIRED');
    assert.equal(kind({ badOrcpt: 'too long' }), 'INVALID_PARAMETER');
    assert.equal(kind({ accepted: ['a@x.test', 'BOB@one.test'] }), 'repeat');
    assert.equal(kind({ accepted: ['a@x.test', 'b@x.test'] }), 'TOO_MANY_RECIPIENTS');
    assert.equal(
      kind({
        accepted: ['a@x.test', 'b@x.test'],
        limits: { maxRecipients: 2, recipientOverflow: 'truncate' },
      }),
      'drop',
    );
    assert.equal(kind({ accepted: ['a@x.test'], allowance: 1 }), 'rate_limited');
    assert.equal(kind({}), 'accept');
  });
  it('counts only the limit refusal as a rejected recipient', () => {
    const limit = decideRcpt({ ...facts, accepted: ['a@x.test', 'b@x.test'] });
    assert.equal(limit.kind === 'refuse' && limit.countsRecipient, true);
    const parameter = decideRcpt({ ...facts, unsupportedParameter: 'FOO' });
    assert.equal(parameter.kind === 'refuse' && parameter.countsRecipient, false);
  });
});

describe('decideContent', () => {
  const limits = { maxMessageBytes: 1000 };
  it('refuses a message over the size limit before any scan verdict', () => {
    assert.deepEqual(
      decideContent(
        { overSize: true, scan: { kind: 'blocked', filename: 'a.exe', extension: 'exe' } },
        limits,
      ),
      { kind: 'refuse', refusal: 'MESSAGE_TOO_BIG', vars: { limit: 1000 } },
    );
  });
  it('names a blocked attachment without its quotes, and the bound a message is over', () => {
    assert.deepEqual(
      decideContent(
        { overSize: false, scan: { kind: 'blocked', filename: 'say "hi".exe', extension: 'exe' } },
        limits,
      ),
      { kind: 'refuse', refusal: 'BLOCKED_ATTACHMENT', vars: { filename: "say 'hi'.exe", extension: 'exe' } },
    );
    assert.deepEqual(
      decideContent(
        { overSize: false, scan: { kind: 'over-limit', bound: 'maxHeaderLines', limit: 500 } },
        limits,
      ),
      { kind: 'refuse', refusal: 'HEADER_TOO_BIG', vars: { limit: 500, what: 'lines' } },
    );
    assert.deepEqual(
      decideContent(
        { overSize: false, scan: { kind: 'over-limit', bound: 'maxMimeDepth', limit: 20 } },
        limits,
      ),
      { kind: 'refuse', refusal: 'MIME_TOO_COMPLEX', vars: { limit: 20, what: 'levels of MIME nesting' } },
    );
  });
  it('refuses a malformed message and accepts a clean one', () => {
    const malformed = decideContent(
      { overSize: false, scan: { kind: 'malformed', detail: 'bad base64' } },
      limits,
    );
    assert.equal(malformed.kind === 'refuse' && malformed.refusal, 'MALFORMED_MESSAGE');
    assert.deepEqual(decideContent({ overSize: false, scan: { kind: 'clean' } }, limits), { kind: 'accept' });
  });
});
