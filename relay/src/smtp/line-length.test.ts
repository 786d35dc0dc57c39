// Command lines over RFC 5321's 512 octets (more for MAIL and RCPT parameters, 12288 for
// AUTH) get 500 5.5.2 and the session goes on; too many errors, or too many commands
// before AUTH, close it with 421 4.7.0 from the reply table.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  type TestRelay,
  waitFor,
} from '../testing/index.ts';

const PLAIN = { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } };
const TOO_LONG = '5.5.2 Line too long';

/** A command line of exactly `octets` octets with its CRLF. */
const line = (start: string, octets: number) => `${start}${'x'.repeat(octets - 2 - start.length)}`;

async function session(t: TestRelay, auth = true): Promise<RawSmtpClient> {
  const c = await RawSmtpClient.connect(t.port('plain'));
  await c.greeting();
  await c.ehlo();
  if (auth) assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
  return c;
}

describe('command line length', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { ...PLAIN, limits: { maxBadCommands: 50 } } });
  });
  after(() => t.close());

  it('takes a 512-octet command and answers a 513-octet one with 500 5.5.2, then goes on', async () => {
    const c = await session(t);
    assert.equal((await c.command(line('NOOP ', 512))).code, 250);
    const long = await c.command(line('NOOP ', 513));
    assert.equal(long.code, 500);
    assert.equal(long.text, TOO_LONG);
    assert.equal((await c.command('NOOP')).code, 250);
    await c.quit();
  });

  it('gives MAIL FROM and RCPT TO room for the parameters of the extensions it offers', async () => {
    const c = await session(t);
    const envid = 'e'.repeat(100);
    const auth = `alice+${'a'.repeat(480)}@example.com`;
    const mail = `MAIL FROM:<alice@example.com> SIZE=12345678901234567890 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=${envid} AUTH=<${auth}>`;
    assert.ok(mail.length > 600);
    const ok = await c.command(mail);
    assert.notEqual(ok.code, 500, ok.text);
    await c.command('RSET');
    assert.equal((await c.command('MAIL FROM:<alice@example.com>')).code, 250);
    const orcpt = `rfc822;${'o'.repeat(480)}@example.net`;
    const rcpt = `RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=${orcpt}`;
    assert.ok(rcpt.length > 512);
    assert.equal((await c.command(rcpt)).code, 250);
    const over = await c.command(`RCPT TO:<carol@example.net> ORCPT=rfc822;${'o'.repeat(1100)}@example.net`);
    assert.equal(over.code, 500);
    assert.equal(over.text, TOO_LONG);
    await c.command('RSET');
    const overMail = await c.command(`MAIL FROM:<alice@example.com> ENVID=${'e'.repeat(1200)}`);
    assert.equal(overMail.code, 500);
    assert.equal(overMail.text, TOO_LONG);
    await c.quit();
  });

  it('takes AUTH lines up to 12288 octets (RFC 4954) and refuses longer ones', async () => {
    const c = await session(t, false);
    const long = await c.authPlain('alice', 'p'.repeat(8000));
    assert.equal(long.code, 535, 'a long initial response reaches the password check');
    const over = await c.command(`AUTH PLAIN ${'A'.repeat(12_300)}`);
    assert.equal(over.code, 500);
    assert.equal(over.text, TOO_LONG);
    // an overlong answer to a challenge ends the exchange
    assert.equal((await c.command('AUTH LOGIN')).code, 334);
    const answer = await c.command('A'.repeat(13_000));
    assert.equal(answer.code, 500);
    assert.equal((await c.command('NOOP')).code, 250);
    assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
    await c.quit();
  });

  it('skips a line of 1 MB without keeping it and answers the commands around it in order', async () => {
    const c = await session(t);
    c.write('NOOP\r\nNOOP ');
    for (let i = 0; i < 16; i++) c.write('y'.repeat(64 * 1024));
    c.write('\r\nNOOP\r\n');
    const replies = [await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(
      replies.map((r) => r.code),
      [250, 500, 250],
    );
    assert.equal(replies[1]?.text, TOO_LONG);
    // pipelined in one write: the commands after an overlong line are not lost
    c.write(`NOOP\r\n${line('NOOP ', 20_000)}\r\nRSET\r\nNOOP\r\n`);
    const more = [await c.reply(), await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(
      more.map((r) => r.code),
      [250, 500, 250, 250],
    );
    const sent = await c.sendRaw('alice@example.com', ['bob@example.net'], 'Subject: after\r\n\r\nok\r\n');
    assert.equal(sent.at(-1)?.code, 250);
    await c.quit();
  });
});

describe('closing a session for errors', () => {
  it('counts unknown commands against maxBadCommands alone and closes with 421 4.7.0', async () => {
    const t = await startTestRelay({ config: { ...PLAIN, limits: { maxBadCommands: 15 } } });
    try {
      const c = await session(t);
      const codes: number[] = [];
      for (let i = 0; i < 14; i++) codes.push((await c.command(`FROB${i}`)).code);
      assert.deepEqual(codes, Array(14).fill(500), 'no close at 10 unknown commands');
      const last = await c.command('FROB');
      assert.equal(last.code, 500);
      const closing = await c.reply();
      assert.equal(closing.code, 421);
      assert.equal(closing.text, '4.7.0 relay.test Too many errors, closing connection');
      await c.waitClosed();
    } finally {
      await t.close();
    }
  });

  it('closes a session of overlong lines after maxBadCommands', async () => {
    const t = await startTestRelay({ config: { ...PLAIN, limits: { maxBadCommands: 3 } } });
    try {
      const c = await session(t);
      for (let i = 0; i < 3; i++) assert.equal((await c.command(line('NOOP ', 600))).code, 500);
      const closing = await c.reply();
      assert.equal(closing.code, 421);
      assert.match(closing.text, /^4\.7\.0 /);
      await c.waitClosed();
    } finally {
      await t.close();
    }
  });

  it('closes a session that sends too many commands before AUTH with 421 4.7.0 from the table', async () => {
    const t = await startTestRelay({ config: { ...PLAIN, limits: { maxBadCommands: 2 } } });
    try {
      // room for EHLO, STARTTLS and EHLO again besides the 2: here EHLO and 3 more
      const c = await session(t, false);
      for (let i = 0; i < 3; i++) assert.equal((await c.command('NOOP')).code, 250);
      const closing = await c.command('NOOP');
      assert.equal(closing.code, 421);
      assert.equal(
        closing.text,
        '4.7.0 relay.test Too many commands without authentication, closing connection',
      );
      await c.waitClosed();
      await waitFor('the connection line', () => t.logs.events('connection').length > 0);
      assert.equal(t.logs.events('connection')[0]?.reason, 'too_many_errors');
    } finally {
      await t.close();
    }
  });

  it('lets a STARTTLS client authenticate however low maxBadCommands is', async () => {
    const t = await startTestRelay({ config: { limits: { maxBadCommands: 1 } } });
    try {
      const c = await RawSmtpClient.connect(t.port('submission'));
      await c.greeting();
      assert.equal((await c.ehlo()).code, 250);
      await c.starttls();
      assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
      await c.quit();
    } finally {
      await t.close();
    }
  });
});
