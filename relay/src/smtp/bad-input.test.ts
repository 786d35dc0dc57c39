// Garbage, out-of-order and abusive clients: the right reply code or a clean close,
// no crash, nothing half-written in the spool, and the next client is served.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  type TestRelay,
  waitFor,
} from '../testing/index.ts';

const PLAIN = { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } };

async function assertServes(t: TestRelay): Promise<void> {
  const c = await RawSmtpClient.connect(t.port('plain'));
  assert.equal((await c.greeting()).code, 220);
  await c.ehlo();
  assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
  const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], 'Subject: ok\r\n\r\nok\r\n');
  assert.equal(replies.at(-1)?.code, 250);
  await c.quit();
}

describe('bad input', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: PLAIN });
  });
  after(() => t.close());

  it('answers unknown commands with 500 and commands out of order with 503', async () => {
    const c = await RawSmtpClient.connect(t.port('plain'));
    await c.greeting();
    assert.equal((await c.command('FROB')).code, 500);
    assert.equal((await c.command('MAIL FROM:<a@b.test>')).code, 503, 'MAIL before EHLO');
    await c.ehlo();
    await c.authPlain('alice', PASSWORD);
    assert.equal((await c.command('RCPT TO:<b@c.test>')).code, 503, 'RCPT before MAIL');
    assert.equal((await c.command('DATA')).code, 503, 'DATA before MAIL');
    assert.equal((await c.command('MAIL FROM:<a@b.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 503, 'DATA before RCPT');
    assert.equal((await c.command('MAIL FROM:<a@b.test>')).code, 503, 'nested MAIL');
    assert.equal((await c.command('RSET')).code, 250);
    await c.quit();
  });

  it('refuses a malformed address with 501', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const r = await c.command('MAIL FROM:<a@b.test');
    assert.equal(r.code, 501);
    await c.quit();
  });

  it('refuses parameters of extensions it does not offer with 555 5.5.4', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const unknown = await c.command('MAIL FROM:<a@b.test> SIZE=100 XFOO=bar');
    assert.equal(unknown.code, 555, unknown.text);
    assert.equal(unknown.text, '5.5.4 Unsupported parameter XFOO=bar');
    // MT-PRIORITY (RFC 6710) and RRVS (RFC 7293) are not offered in EHLO
    assert.equal((await c.command('MAIL FROM:<a@b.test> MT-PRIORITY=3')).code, 555);
    const offered = await c.command(
      'MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<> RET=HDRS ENVID=QQ314159',
    );
    assert.equal(offered.code, 250, offered.text);
    const rrvs = await c.command('RCPT TO:<b@c.test> RRVS=2027-01-01T00:00:00Z');
    assert.equal(rrvs.code, 555);
    assert.equal(rrvs.text, '5.5.4 Unsupported parameter RRVS=2027-01-01T00:00:00Z');
    assert.equal((await c.command('RCPT TO:<b@c.test> NOTIFY=NEVER')).code, 250);
    await c.quit();
  });

  it('takes the DSN parameters (RFC 3461) and answers 501 to bad values', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const ehlo = await c.command('EHLO client.test');
    assert.ok(
      ehlo.lines.some((l) => l.slice(4) === 'DSN'),
      `EHLO offers DSN: ${ehlo.lines.join(' | ')}`,
    );
    assert.equal((await c.command('MAIL FROM:<a@b.test> RET=BODY')).code, 501);
    const longEnvid = await c.command(`MAIL FROM:<a@b.test> ENVID=${'x'.repeat(101)}`);
    assert.equal(longEnvid.code, 501);
    assert.equal(longEnvid.text, '5.5.4 Invalid ENVID parameter: longer than 100 characters');
    assert.equal((await c.command('MAIL FROM:<a@b.test> RET=FULL ENVID=ab+2Bcd')).code, 250);
    assert.equal((await c.command('RCPT TO:<b@c.test> NOTIFY=NEVER,SUCCESS')).code, 501);
    assert.equal((await c.command('RCPT TO:<b@c.test> NOTIFY=SOMETIMES')).code, 501);
    assert.equal((await c.command('RCPT TO:<b@c.test> ORCPT=b@c.test')).code, 501, 'ORCPT needs a type');
    assert.equal(
      (await c.command('RCPT TO:<b@c.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@c.test')).code,
      250,
    );
    assert.equal((await c.command('RCPT TO:<d@c.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write('Subject: dsn\r\n\r\nhi\r\n.\r\n');
    const queued = await c.reply();
    assert.equal(queued.code, 250);
    await c.quit();
    const stored = (await t.queued()).find((m) => m.envelope.queueId === queued.text.split(' ').pop());
    assert.equal(stored?.envelope.ret, 'FULL');
    assert.equal(stored?.envelope.envid, 'ab+cd', 'xtext decoded');
    assert.deepEqual(
      stored?.envelope.recipients.map((r) => [r.address, r.notify, r.orcpt]),
      [
        ['b@c.test', ['SUCCESS', 'FAILURE'], 'rfc822;B@c.test'],
        ['d@c.test', undefined, undefined],
      ],
    );
  });

  it('refuses an internationalised address with 553 5.6.7 unless MAIL FROM declared SMTPUTF8', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const sender = await c.command('MAIL FROM:<jörg@b.test>');
    assert.equal(sender.code, 553);
    assert.match(sender.text, /^5\.6\.7 Address <.+@b\.test> is not ASCII: declare SMTPUTF8/);
    assert.equal((await c.command('MAIL FROM:<a@b.test>')).code, 250);
    const rcpt = await c.command('RCPT TO:<zoë@c.test>');
    assert.equal(rcpt.code, 553);
    assert.match(rcpt.text, /^5\.6\.7 /);
    assert.equal((await c.command('RSET')).code, 250);
    assert.equal((await c.command('MAIL FROM:<jörg@b.test> SMTPUTF8')).code, 250);
    assert.equal((await c.command('RCPT TO:<zoë@c.test>')).code, 250);
    await c.quit();
  });

  it('closes the connection after too many bad commands with 421', async () => {
    const strict = await startTestRelay({ config: { ...PLAIN, limits: { maxBadCommands: 5 } } });
    after(() => strict.close());
    const c = await RawSmtpClient.connect(strict.port('plain'));
    await c.greeting();
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await c.command(`GARBAGE${i}`)).code);
    const last = await c.reply();
    assert.deepEqual(codes, [500, 500, 500, 500, 500]);
    assert.equal(last.code, 421);
    assert.match(last.text, /^4\.7\.0 .*Too many errors/);
    await c.waitClosed();
    await assertServes(strict);
  });

  it('survives binary garbage and an over-long command line', async () => {
    const c = await RawSmtpClient.connect(t.port('plain'));
    await c.greeting();
    c.write(Buffer.from([0, 1, 2, 0xff, 0xfe, 13, 10]));
    assert.equal((await c.reply()).code, 500);
    c.write(`EHLO ${'a'.repeat(20_000)}\r\n`);
    // either an error reply or a close: never a crash, never a hang
    await Promise.race([c.reply().catch(() => undefined), c.waitClosed()]);
    await assertServes(t);
  });

  it('keeps nothing of a message whose client disconnects mid-DATA', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    await c.command('MAIL FROM:<alice@example.com>');
    await c.command('RCPT TO:<bob@example.net>');
    assert.equal((await c.command('DATA')).code, 354);
    const before = (await t.queued()).length;
    c.write(`Subject: cut\r\n\r\n${'partial line\r\n'.repeat(5000)}`);
    c.destroy();
    await waitFor('the aborted message is logged', () => t.logs.events('aborted').length > 0);
    assert.equal((await t.queued()).length, before);
    await assertServes(t);
  });

  it('pipelined commands get their replies in order', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    c.write(
      'MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n',
    );
    const codes = [
      (await c.reply()).code,
      (await c.reply()).code,
      (await c.reply()).code,
      (await c.reply()).code,
    ];
    assert.deepEqual(codes, [250, 250, 250, 354]);
    c.write('Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n');
    assert.equal((await c.reply()).code, 250);
    assert.equal((await c.reply()).code, 221);
  });
});

describe('clients that talk before the greeting', () => {
  it('refuses a command sent while the connect check is still running', async () => {
    // a DNS server that never answers holds the DNSBL check at connect (and the greeting)
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    const t = await startTestRelay({
      config: {
        ...PLAIN,
        dnsbl: {
          enabled: true,
          checkAt: 'connect',
          timeoutMs: 1000,
          resolvers: [`127.0.0.1:${silent.address().port}`],
          zones: [{ zone: 'bl.test' }],
        },
      },
    });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      c.write('EHLO early.example\r\n');
      const reply = await c.reply(5000);
      assert.equal(reply.code, 421);
      assert.match(reply.text, /talk too soon/);
    } finally {
      await t.close();
      silent.close();
    }
  });
});

describe('timeouts and connection caps', () => {
  it('closes an idle client with 421', async () => {
    const t = await startTestRelay({ config: { ...PLAIN, limits: { idleTimeoutSeconds: 1 } } });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      await c.greeting();
      const r = await c.reply(5000);
      assert.equal(r.code, 421);
      await c.waitClosed();
      await assertServes(t);
    } finally {
      await t.close();
    }
  });

  it('refuses connections over the per-IP and overall caps with 421 4.7.0', async () => {
    const t = await startTestRelay({
      config: { ...PLAIN, limits: { maxConnectionsPerIp: 2, maxConnections: 3 } },
    });
    const open: RawSmtpClient[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await RawSmtpClient.connect(t.port('plain'));
        assert.equal((await c.greeting()).code, 220);
        open.push(c);
      }
      const third = await RawSmtpClient.connect(t.port('plain'));
      const refused = await third.greeting();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0 .*Too many connections from your address/);
      await third.waitClosed();
      // another client address (127.0.0.2 is loopback too) still gets in, up to the overall cap
      const other = await RawSmtpClient.connect(t.port('plain'), { localAddress: '127.0.0.2' });
      assert.equal((await other.greeting()).code, 220);
      open.push(other);
      const fourth = await RawSmtpClient.connect(t.port('plain'), { localAddress: '127.0.0.3' });
      const over = await fourth.greeting();
      assert.equal(over.code, 421);
      assert.match(over.text, /^4\.7\.0 .*Too many connections, try again/);
      // a slot frees when a client leaves
      await open.shift()?.quit();
      await waitFor('a freed slot is reusable', async () => {
        const c = await RawSmtpClient.connect(t.port('plain'));
        const g = await c.greeting();
        c.destroy();
        return g.code === 220;
      });
    } finally {
      for (const c of open) c.destroy();
      await t.close();
    }
  });
});

describe('listener binding', () => {
  it('serves a socket that connects and leaves without a word', async () => {
    const t = await startTestRelay({ config: PLAIN });
    try {
      await new Promise<void>((resolve) => {
        const s = net.connect(t.port('plain'), '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
      });
      await assertServes(t);
    } finally {
      await t.close();
    }
  });
});
