// Rate limits count only what was accepted: a transaction that is reset, abandoned or
// refused at the end of DATA uses up none of a user's or an address's messages or
// recipients, on the real relay with small limits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  authenticated,
  EXE_ATTACHMENT,
  PLAIN_LISTENER,
  type RawSmtpClient,
  startTestRelay,
  type TestRelay,
  transaction,
} from '../testing/index.ts';

const PLAIN = { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } };
const FROM = 'alice@example.com';
const TOO_BIG = `Subject: big\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(8);

/** What a client can do without a message being accepted, each in its own way. */
async function wasteTransactions(t: TestRelay, c: RawSmtpClient): Promise<void> {
  for (let i = 0; i < 4; i++) {
    assert.equal((await c.command(`MAIL FROM:<${FROM}>`)).code, 250);
    assert.equal((await c.command('RCPT TO:<bob@example.net>')).code, 250);
    assert.equal((await c.command('RSET')).code, 250);
  }
  const to = ['bob@example.net', 'carol@example.net'];
  assert.equal(await transaction(c, { from: FROM, to, body: EXE_ATTACHMENT }), 550);
  assert.equal(await transaction(c, { from: FROM, to, body: EXE_ATTACHMENT }), 550);
  assert.equal(await transaction(c, { from: FROM, to, body: TOO_BIG }), 552);
  // a session that leaves mid-transaction
  const gone = await authenticated(t.port('plain'), 'alice');
  assert.equal((await gone.command(`MAIL FROM:<${FROM}>`)).code, 250);
  assert.equal((await gone.command('RCPT TO:<bob@example.net>')).code, 250);
  await gone.quit();
}

describe('rate limits charge only accepted messages', () => {
  for (const scope of ['perUser', 'perIp'] as const) {
    it(`${scope}: reset, abandoned and refused transactions leave the allowance whole`, async () => {
      const limits = [
        { what: 'messages', limit: 2, windowSeconds: 3600 },
        { what: 'recipients', limit: 3, windowSeconds: 3600 },
      ];
      const t = await startTestRelay({
        config: {
          ...PLAIN,
          limits: { maxMessageBytes: 4096 },
          rateLimits: scope === 'perUser' ? { perUser: limits } : { perUser: [], perIp: limits },
        },
      });
      try {
        const c = await authenticated(t.port('plain'), 'alice');
        await wasteTransactions(t, c);
        // the whole allowance is still there: 2 messages, 3 recipients
        const two = ['bob@example.net', 'carol@example.net'];
        assert.equal(await transaction(c, { from: FROM, to: two }), 250);
        assert.equal(await transaction(c, { from: FROM, to: ['dave@example.net'] }), 250);
        assert.equal((await t.queued()).length, 2);
        const over = await c.command(`MAIL FROM:<${FROM}>`);
        assert.equal(over.code, 451);
        assert.match(over.text, /^4\.7\.1 Rate limit reached: 2 messages per hour/);
        await c.quit();
        // a new session sees the same count
        const next = await authenticated(t.port('plain'), 'alice');
        assert.equal((await next.command(`MAIL FROM:<${FROM}>`)).code, 451);
        await next.quit();
      } finally {
        await t.close();
      }
    });
  }
});
