// Mail in, mail out: messages accepted by a relay arrive at real SMTP sinks found
// through MX records on a real DNS server, or at a smarthost; per-recipient outcomes,
// bounces (RFC 3464) to the sender, and the drain hand-off to a peer relay.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer, { type SendMailOptions, type SentMessageInfo } from 'nodemailer';
import {
  authenticated,
  PASSWORD,
  PLAIN_LISTENER,
  type SmtpSink,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  testUser,
  waitFor,
} from '../src/testing/index.ts';

function send(t: TestRelay, mail: SendMailOptions): Promise<SentMessageInfo> {
  return nodemailer
    .createTransport({
      host: '127.0.0.1',
      port: t.port('plain'),
      ignoreTLS: true,
      auth: { user: 'alice', pass: PASSWORD },
    })
    .sendMail(mail);
}

describe('delivery by MX', () => {
  let dns: TestDnsServer;
  let sinks: SmtpSink[];
  let relay: TestRelay;
  before(async () => {
    dns = await startDnsServer();
    const first = await startSmtpSink({ host: '127.0.0.2', tls: true });
    // every MX host listens on the same port (MX records carry no port), on its own loopback address
    sinks = [
      first,
      await startSmtpSink({ host: '127.0.0.3', port: first.port }),
      await startSmtpSink({ host: '127.0.0.4', port: first.port }),
    ];
    dns.setMx('one.test', [{ exchange: 'mx.one.test', priority: 10 }]);
    dns.setA('mx.one.test', ['127.0.0.2']);
    dns.setMx('two.test', [{ exchange: 'mx.two.test', priority: 10 }]);
    dns.setA('mx.two.test', ['127.0.0.3']);
    dns.setMx('sender.test', [{ exchange: 'mx.sender.test', priority: 10 }]);
    dns.setA('mx.sender.test', ['127.0.0.4']);
    dns.setMx('nullmx.test', [{ exchange: '', priority: 0 }]);
    relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { resolvers: [dns.address], port: first.port, allowLocalAddresses: true },
      },
    });
  });
  after(async () => {
    await relay.close();
    for (const s of sinks) await s.close();
    await dns.close();
  });

  it('delivers each domain to its MX with the bytes the client sent', async () => {
    const info = await send(relay, {
      from: 'alice@sender.test',
      to: ['a@one.test', 'b@one.test', 'c@two.test'],
      subject: 'by MX',
      text: 'line one\n.\nline three',
      messageId: '<mx-1@sender.test>',
    });
    assert.match(String(info.response), /^250 /);
    const [one, two] = sinks as [SmtpSink, SmtpSink];
    await one.waitForMessages(1);
    await two.waitForMessages(1);
    assert.deepEqual(one.messages[0]?.recipients, ['a@one.test', 'b@one.test']);
    assert.deepEqual(two.messages[0]?.recipients, ['c@two.test']);
    assert.equal(one.messages[0]?.tls, true, 'STARTTLS used where offered');
    const raw = one.messages[0]?.raw.toString() ?? '';
    assert.match(raw, /^Received: from .*\s+by relay\.test \(Sluice\) with ESMTPA id /s);
    assert.match(raw, /Message-ID: <mx-1@sender\.test>/i);
    assert.match(raw, /line one\r\n\.\r\nline three/, 'a lone dot line arrives as content');
    await waitFor('the queue is empty after delivery', () => relay.relay.delivery?.size === 0);
  });

  it('records mixed outcomes per recipient and bounces the failures to the sender (RFC 3464)', async () => {
    const [one] = sinks as [SmtpSink];
    const senderMx = sinks[2] as SmtpSink;
    one.setRecipientReply('gone@one.test', { code: 550, text: '5.1.1 no such user' });
    one.setRecipientReply('later@one.test', { code: 451, text: '4.2.1 mailbox busy' });
    const before = one.messages.length;
    await send(relay, {
      from: 'alice@sender.test',
      to: ['ok@one.test', 'gone@one.test', 'later@one.test', 'x@nullmx.test'],
      subject: 'mixed',
      text: 'mixed',
    });
    await one.waitForMessages(before + 1);
    assert.deepEqual(one.messages.at(-1)?.recipients, ['ok@one.test']);
    await senderMx.waitForMessages(1, 10_000);
    const dsn = senderMx.messages[0];
    assert.equal(dsn?.sender, '', 'a bounce has the null reverse-path');
    assert.deepEqual(dsn?.recipients, ['alice@sender.test']);
    const text = dsn?.raw.toString() ?? '';
    assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/i);
    assert.match(text, /Final-Recipient: rfc822; gone@one\.test\r\nAction: failed\r\nStatus: 5\.1\.1/);
    assert.match(text, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user/);
    assert.match(text, /Final-Recipient: rfc822; x@nullmx\.test\r\nAction: failed\r\nStatus: 5\.1\.10/);
    assert.doesNotMatch(text, /later@one\.test\r\nAction: failed/, 'the deferred recipient is not bounced');
    const queued = (await relay.relay.delivery?.list())?.messages ?? [];
    const pending = queued.flatMap((e) => e.recipients).filter((r) => r.state === 'deferred');
    assert.deepEqual(
      pending.map((r) => [r.address, r.status]),
      [['later@one.test', '4.2.1']],
    );
    const metrics = await relay.relay.metrics.registry.getSingleMetricAsString(
      'sluice_delivery_attempts_total',
    );
    assert.match(metrics, /result="bounced"} 2/);
    assert.match(metrics, /result="deferred"} 1/);
  });

  it('answers DSN requests (RFC 3461): relayed for SUCCESS, the whole message for RET=FULL, nothing for NEVER', async () => {
    const [one] = sinks as [SmtpSink];
    const senderMx = sinks[2] as SmtpSink;
    one.setRecipientReply('gone2@one.test', { code: 550, text: '5.1.1 no such user' });
    one.setRecipientReply('gone3@one.test', { code: 550, text: '5.1.1 no such user' });
    const noticesBefore = senderMx.messages.length;
    const submit = async (mailFrom: string, rcpt: string, body: string) => {
      const c = await authenticated(relay.port('plain'), 'alice');
      const replies = [await c.command(mailFrom), await c.command(rcpt), await c.command('DATA')];
      c.write(`${body}.\r\n`);
      replies.push(await c.reply());
      await c.quit();
      assert.deepEqual(
        replies.map((r) => r.code),
        [250, 250, 354, 250],
      );
    };
    await submit(
      'MAIL FROM:<alice@sender.test>',
      'RCPT TO:<ok2@one.test> NOTIFY=SUCCESS',
      'Subject: s\r\n\r\nok\r\n',
    );
    await submit(
      'MAIL FROM:<alice@sender.test> RET=FULL ENVID=ENV-9',
      'RCPT TO:<gone2@one.test> NOTIFY=FAILURE ORCPT=rfc822;Gone2@one.test',
      'Subject: f\r\n\r\nthe body comes back\r\n',
    );
    await submit(
      'MAIL FROM:<alice@sender.test>',
      'RCPT TO:<gone3@one.test> NOTIFY=NEVER',
      'Subject: n\r\n\r\nx\r\n',
    );
    // the first test's deferred recipient stays queued; these three and any notices leave
    const pending = async () =>
      ((await relay.relay.delivery?.list())?.messages ?? []).filter(
        (e) => e.dsn === true || e.recipients.some((r) => /^(ok2|gone2|gone3)@/.test(r.address)),
      );
    await waitFor(
      'the three messages and their notices are delivered',
      async () => (await pending()).length === 0,
      { timeoutMs: 10_000 },
    );
    const notices = senderMx.messages.slice(noticesBefore).map((m) => m.raw.toString());
    assert.equal(notices.length, 2, 'no notice for NOTIFY=NEVER');
    const relayed = notices.find((n) => /Action: relayed/.test(n)) ?? '';
    assert.match(relayed, /Subject: Successful Mail Relay Report/);
    assert.match(relayed, /Final-Recipient: rfc822; ok2@one\.test\r\nAction: relayed\r\nStatus: 2\.0\.0/);
    const failed = notices.find((n) => /Action: failed/.test(n)) ?? '';
    assert.match(failed, /Original-Envelope-Id: ENV-9/);
    assert.match(
      failed,
      /Original-Recipient: rfc822; Gone2@one\.test\r\nFinal-Recipient: rfc822; gone2@one\.test/,
    );
    assert.match(failed, /Content-Type: message\/rfc822/);
    assert.match(failed, /the body comes back/);
  });

  it('passes mail for the domainless <postmaster> on to the postmaster address (RFC 5321 4.5.1)', async () => {
    const two = sinks[1] as SmtpSink;
    // by default postmaster@<hostname>: the relay's own name, whose mail goes to its MX
    dns.setMx('relay.test', [{ exchange: 'mx.two.test', priority: 10 }]);
    const before = two.messages.length;
    const c = await authenticated(relay.port('plain'), 'alice');
    const replies = await c.sendRaw(
      'alice@sender.test',
      ['PostMaster'],
      'Subject: to the postmaster\r\n\r\nhi\r\n',
    );
    assert.deepEqual(
      replies.map((r) => r.code),
      [250, 250, 354, 250],
    );
    await c.quit();
    await two.waitForMessages(before + 1);
    assert.deepEqual(two.messages.at(-1)?.recipients, ['postmaster@relay.test']);
    assert.equal(relay.logs.events('postmaster').at(-1)?.recipient, 'postmaster@relay.test');

    // a configured address instead, alongside other recipients
    const configured = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        postmaster: 'abuse-desk@two.test',
        delivery: { resolvers: [dns.address], port: two.port, allowLocalAddresses: true },
      },
    });
    try {
      const d = await authenticated(configured.port('plain'), 'alice');
      const sent = await d.sendRaw(
        'alice@sender.test',
        ['postmaster', 'c@two.test'],
        'Subject: to the postmaster\r\n\r\nhi\r\n',
      );
      assert.equal(sent.at(-1)?.code, 250);
      await d.quit();
      await two.waitForMessages(before + 2);
      assert.deepEqual(two.messages.at(-1)?.recipients, ['abuse-desk@two.test', 'c@two.test']);
    } finally {
      await configured.close();
    }
  });
});

describe('delivery through a smarthost', () => {
  it('sends every message to the smarthost with STARTTLS and AUTH, over one connection', async () => {
    const smarthost = await startSmtpSink({ tls: true, auth: { username: 'relay', password: 's3cret' } });
    const dir = await mkdtemp(join(tmpdir(), 'sluice-smarthost-'));
    const passwordFile = join(dir, 'password');
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      delivery: {
        mode: 'smarthost',
        smarthost: {
          host: '127.0.0.1',
          port: smarthost.port,
          tls: 'starttls',
          username: 'relay',
          passwordFile,
          rejectUnauthorized: false,
        },
      },
    };
    // a missing password file is a config error that names the field
    await assert.rejects(
      startTestRelay({ deliver: true, config }),
      /delivery\.smarthost\.passwordFile: cannot read/,
    );
    await writeFile(passwordFile, 's3cret\n');
    const relay = await startTestRelay({ deliver: true, config });
    try {
      for (let i = 0; i < 3; i++) {
        await send(relay, {
          from: 'alice@example.com',
          to: [`r${i}@a.test`, `s${i}@b.test`],
          subject: `s${i}`,
          text: 'x',
        });
        // one at a time: the next message finds the connection idle in the pool
        await smarthost.waitForMessages(i + 1);
      }
      assert.deepEqual(
        smarthost.messages.map((m) => [m.authUser, m.tls, m.recipients.length]),
        [
          ['relay', true, 2],
          ['relay', true, 2],
          ['relay', true, 2],
        ],
      );
      assert.equal(smarthost.connections, 1, 'one connection carries every message');
    } finally {
      await relay.close();
      await smarthost.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('drain', () => {
  it('hands queued mail to a peer relay on shutdown, which delivers it', async () => {
    const sink = await startSmtpSink();
    const deadProbe = await startSmtpSink();
    const deadPort = deadProbe.port;
    await deadProbe.close();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-drain-'));
    await writeFile(join(dir, 'handoff-password'), `${PASSWORD}\n`);
    // the leaving relay signs what it accepts: the signature must travel with the hand-off
    const key = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    await writeFile(join(dir, 'dkim.pem'), key);
    const peer = await startTestRelay({
      deliver: true,
      users: [await testUser('alice'), await testUser('handoff', { rateLimits: [] })],
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
      },
    });
    const leaving = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        // its own downstream is unreachable: everything stays queued
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: deadPort, tls: 'none' } },
        dkim: {
          keys: [
            {
              domain: 'example.com',
              selector: 'leaving',
              algorithm: 'ed25519-sha256',
              privateKeyFile: join(dir, 'dkim.pem'),
            },
          ],
        },
        drain: {
          deadlineSeconds: 0,
          handoff: {
            host: '127.0.0.1',
            port: peer.port('plain'),
            tls: 'none',
            username: 'handoff',
            passwordFile: join(dir, 'handoff-password'),
          },
        },
      },
    });
    try {
      for (let i = 0; i < 3; i++) {
        await send(leaving, {
          from: 'alice@example.com',
          to: [`d${i}@example.net`],
          subject: `drain ${i}`,
          text: 'x',
        });
      }
      // one whose client declared SMTPUTF8 (a UTF-8 header): the peer must learn it too
      const c = await authenticated(leaving.port('plain'), 'alice');
      assert.equal((await c.command('MAIL FROM:<alice@example.com> SMTPUTF8')).code, 250);
      assert.equal((await c.command('RCPT TO:<d3@example.net>')).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      c.write(Buffer.from('Subject: Grüße\r\n\r\nx\r\n.\r\n', 'utf8'));
      assert.equal((await c.reply()).code, 250);
      await c.quit();
      await waitFor('the first attempts failed', async () =>
        ((await leaving.relay.delivery?.list())?.messages ?? []).every((e) => (e.attempts ?? 0) > 0),
      );
      await leaving.relay.close(200, 0);
      assert.equal((await leaving.queued()).length, 0, 'nothing is left in the leaving relay');
      await sink.waitForMessages(4, 10_000).catch((err: unknown) => {
        // what each relay did, for a failure seen once in CI and not again
        const events = (logs: TestRelay['logs']) =>
          logs.lines.map((l) =>
            [l.event, l.queueId, l.result ?? l.reason ?? l.code].filter(Boolean).join(' '),
          );
        throw new Error(
          `${err instanceof Error ? err.message : String(err)}\nleaving: ${events(leaving.logs).join('; ')}\npeer: ${events(peer.logs).join('; ')}`,
        );
      });
      assert.deepEqual(sink.messages.map((m) => [m.recipients[0], m.smtpUtf8]).sort(), [
        ['d0@example.net', false],
        ['d1@example.net', false],
        ['d2@example.net', false],
        ['d3@example.net', true],
      ]);
      assert.match(
        sink.messages.find((m) => m.recipients[0] === 'd3@example.net')?.raw.toString() ?? '',
        /Subject: Grüße/,
      );
      // the three with a From header were signed on acceptance; the peer passes the signature on
      for (const m of sink.messages.filter((m) => m.recipients[0] !== 'd3@example.net')) {
        assert.match(
          m.raw.toString('latin1'),
          /\r\nDKIM-Signature: [\s\S]*?d=example\.com;[\s\S]*? s=leaving;/,
        );
      }
      assert.equal(leaving.logs.events('handed_off').length, 4);
    } finally {
      await leaving.close().catch(() => undefined);
      await peer.close();
      await sink.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
