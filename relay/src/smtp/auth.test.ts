// AUTH at the SMTP front: offered only after TLS unless the policy allows plaintext,
// PLAIN and LOGIN, 530 before AUTH, 535 for bad or suspended credentials.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  type TestRelay,
  testUser,
} from '../testing/index.ts';

describe('SMTP AUTH', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({
      users: [await testUser('alice'), await testUser('mallory', { suspended: true })],
    });
  });
  after(() => t.close());

  it('offers AUTH only after STARTTLS and refuses it before', async () => {
    const c = await RawSmtpClient.connect(t.port('submission'));
    assert.equal((await c.greeting()).code, 220);
    const ehlo = await c.ehlo();
    assert.ok(ehlo.lines.some((l) => l.includes('STARTTLS')));
    assert.ok(!ehlo.lines.some((l) => l.includes('AUTH')), 'no AUTH before TLS');
    assert.ok(ehlo.lines.some((l) => l.includes('SIZE 31457280')));
    assert.ok(ehlo.lines.some((l) => l.includes('ENHANCEDSTATUSCODES')));
    const early = await c.authPlain('alice', PASSWORD);
    assert.equal(early.code, 538);
    const tlsEhlo = await c.starttls();
    assert.ok(tlsEhlo.lines.some((l) => /AUTH PLAIN LOGIN/.test(l)));
    const ok = await c.authPlain('alice', PASSWORD);
    assert.equal(ok.code, 235);
    assert.match(ok.text, /^2\.7\.0 /);
    await c.quit();
  });

  it('refuses MAIL FROM before AUTH with 530 5.7.0', async () => {
    const c = await RawSmtpClient.connect(t.port('submission'));
    await c.greeting();
    await c.ehlo();
    await c.starttls();
    const mail = await c.command('MAIL FROM:<alice@example.com>');
    assert.equal(mail.code, 530);
    assert.equal(mail.text, '5.7.0 Authentication required');
    await c.quit();
  });

  it('answers bad credentials with 535 5.7.8 and logs the rejection without the password', async () => {
    const c = await RawSmtpClient.connect(t.port('smtps'), { tls: true });
    await c.greeting();
    await c.ehlo();
    const bad = await c.authPlain('alice', 'wrong password');
    assert.equal(bad.code, 535);
    assert.equal(bad.text, '5.7.8 Authentication credentials invalid');
    const unknown = await c.authPlain('nobody', PASSWORD);
    assert.equal(unknown.code, 535);
    await c.quit();
    const rejected = t.logs.events('rejected').filter((l) => l.reason === 'auth_failed');
    assert.ok(rejected.length >= 2);
    assert.ok(!JSON.stringify(t.logs.lines).includes('wrong password'));
  });

  it('refuses a suspended user even with the right password', async () => {
    const c = await RawSmtpClient.connect(t.port('smtps'), { tls: true });
    await c.greeting();
    await c.ehlo();
    const r = await c.authPlain('mallory', PASSWORD);
    assert.equal(r.code, 535);
    assert.match(r.text, /^5\.7\.8 .*suspended/);
    await c.quit();
  });

  it('accepts AUTH LOGIN', async () => {
    const c = await RawSmtpClient.connect(t.port('smtps'), { tls: true });
    await c.greeting();
    await c.ehlo();
    assert.equal((await c.command('AUTH LOGIN')).code, 334);
    assert.equal((await c.command(Buffer.from('alice').toString('base64'))).code, 334);
    const r = await c.command(Buffer.from(PASSWORD).toString('base64'));
    assert.equal(r.code, 235);
    await c.quit();
  });

  for (const [name, secure, listener] of [
    ['STARTTLS', false, 'submission'],
    ['implicit TLS', true, 'smtps'],
  ] as const) {
    it(`sends mail with nodemailer over ${name}`, async () => {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: t.port(listener),
        secure,
        requireTLS: !secure,
        tls: { rejectUnauthorized: false },
        auth: { user: 'alice', pass: PASSWORD },
      });
      const info = await transport.sendMail({
        from: 'alice@example.com',
        to: 'bob@example.net',
        subject: `over ${name}`,
        text: 'hello',
      });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-F]+/);
      const queueId = info.response.split(' ').pop();
      const spooled = (await t.queued()).find((m) => m.envelope.queueId === queueId);
      assert.ok(spooled, 'message is in the spool');
      assert.equal(spooled.envelope.user, 'alice');
      assert.equal(spooled.envelope.tls, true);
      assert.deepEqual(
        spooled.envelope.recipients.map((r) => r.address),
        ['bob@example.net'],
      );
      assert.match(spooled.body.toString(), new RegExp(`Subject: over ${name}`));
      transport.close();
    });
  }
});

describe('SMTP AUTH without TLS', () => {
  const LISTENERS = [
    PLAIN_LISTENER,
    { name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
    { name: 'smtps', address: '127.0.0.1', port: 0, tls: 'implicit' },
  ];
  // one failure locks the user and the IP: a credential that reached the check would show
  const lockout = { maxFailuresPerUser: 1, maxFailuresPerIp: 1 };
  type Kind = 'none' | 'starttls, before STARTTLS' | 'starttls, after STARTTLS' | 'implicit';
  const KINDS: readonly Kind[] = [
    'none',
    'starttls, before STARTTLS',
    'starttls, after STARTTLS',
    'implicit',
  ];

  /** A session on that kind of listener, at the point where AUTH would be sent. */
  async function open(t: TestRelay, kind: Kind): Promise<{ c: RawSmtpClient; ehlo: string[] }> {
    const port =
      kind === 'none' ? t.port('plain') : kind === 'implicit' ? t.port('smtps') : t.port('submission');
    const c = await RawSmtpClient.connect(port, { tls: kind === 'implicit' });
    await c.greeting();
    let ehlo = await c.ehlo();
    if (kind === 'starttls, after STARTTLS') ehlo = await c.starttls();
    return { c, ehlo: ehlo.lines };
  }

  async function authCount(t: TestRelay): Promise<number> {
    const metric = await t.relay.metrics.authTotal.get();
    return metric.values.reduce((sum, v) => sum + v.value, 0);
  }

  for (const allowPlaintext of [false, true]) {
    for (const kind of KINDS) {
      const encrypted = kind === 'implicit' || kind === 'starttls, after STARTTLS';
      const allowed = encrypted || allowPlaintext;
      it(`${allowed ? 'accepts' : 'refuses with 538 5.7.11'} AUTH on a listener with tls ${kind}, allowPlaintext ${allowPlaintext}`, async () => {
        const t = await startTestRelay({
          config: { listeners: LISTENERS, auth: { allowPlaintext }, authLockout: lockout },
        });
        try {
          if (allowed) {
            const { c, ehlo } = await open(t, kind);
            assert.ok(
              ehlo.some((l) => l.includes('AUTH PLAIN LOGIN')),
              'AUTH offered',
            );
            const ok = await c.authPlain('alice', PASSWORD);
            assert.equal(ok.code, 235);
            await c.quit();
            return;
          }
          const { c, ehlo } = await open(t, kind);
          assert.ok(!ehlo.some((l) => l.includes('AUTH')), 'AUTH not offered');
          // the right password, a wrong one, and AUTH LOGIN: each refused before any check
          for (const r of [
            await c.authPlain('alice', PASSWORD),
            await c.authPlain('alice', 'wrong password'),
            await c.command('AUTH LOGIN'),
            await c.command(`AUTH LOGIN ${Buffer.from('alice').toString('base64')}`),
          ]) {
            assert.equal(r.code, 538);
            assert.equal(r.text, '5.7.11 Encryption required for requested authentication mechanism');
          }
          const mail = await c.command('MAIL FROM:<alice@example.com>');
          assert.equal(mail.code, 530, 'still not authenticated');
          await c.quit();
          assert.equal(await authCount(t), 0, 'no credential was checked');
          assert.equal(t.logs.events('auth_lockout').length, 0);
          // nothing was counted against the user or the IP: AUTH over TLS works at once
          const secure = await open(t, 'implicit');
          assert.equal((await secure.c.authPlain('alice', PASSWORD)).code, 235);
          await secure.c.quit();
          const refusals = t.logs.events('rejected').filter((l) => String(l.reply).startsWith('538 '));
          assert.equal(refusals.length, 4);
          assert.ok(refusals.every((l) => l.reason === 'auth_required'));
        } finally {
          await t.close();
        }
      });
    }
  }
});
