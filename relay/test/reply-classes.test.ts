// Every remote answer classified, end to end: sinks play providers' replies to a relay
// delivering by MX; the class is in the log lines, the outcome metric, the bounce the
// sender gets and the sender's usage. A throttling reply defers even as a 5xx.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { UsageResponse } from '../src/admin/usage-api.ts';
import {
  PASSWORD,
  PLAIN_LISTENER,
  type SmtpSink,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

const TOKEN = 'classes-token';

describe('reply classes', () => {
  let dns: TestDnsServer;
  let mx: SmtpSink;
  let senderMx: SmtpSink;
  let relay: TestRelay;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-classes-'));
    await writeFile(join(dir, 'token'), TOKEN);
    dns = await startDnsServer();
    mx = await startSmtpSink({ host: '127.0.0.2' });
    senderMx = await startSmtpSink({ host: '127.0.0.4', port: mx.port });
    dns.setMx('one.test', [{ exchange: 'mx.one.test', priority: 10 }]);
    dns.setA('mx.one.test', ['127.0.0.2']);
    dns.setMx('sender.test', [{ exchange: 'mx.sender.test', priority: 10 }]);
    dns.setA('mx.sender.test', ['127.0.0.4']);
    mx.setRecipientReply('gone@one.test', {
      code: 550,
      text: "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address",
    });
    // a 421 would close the sink's session; the words and code are Gmail's all the same
    mx.setRecipientReply('slow@one.test', {
      code: 451,
      text: '4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address and has been temporarily rate limited.',
    });
    mx.setRecipientReply('rl@one.test', { code: 550, text: '5.7.1 RL0000 rate limited, please try later' });
    relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        usage: { flushIntervalSeconds: 60 },
        delivery: { resolvers: [dns.address], port: mx.port, allowLocalAddresses: true },
      },
    });
    await nodemailer
      .createTransport({
        host: '127.0.0.1',
        port: relay.port('plain'),
        ignoreTLS: true,
        auth: { user: 'alice', pass: PASSWORD },
      })
      .sendMail({
        from: 'alice@sender.test',
        to: ['ok@one.test', 'gone@one.test', 'slow@one.test', 'rl@one.test'],
        subject: 'classes',
        text: 'hello',
      });
    await senderMx.waitForMessages(1, 10_000);
  });
  after(async () => {
    await relay.close();
    await mx.close();
    await senderMx.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs the class on delivered, bounced and deferred lines', () => {
    const line = (event: string, recipient: string) =>
      relay.logs.events(event).find((l) => l.recipient === recipient);
    assert.equal(line('delivered', 'ok@one.test')?.class, 'accepted');
    assert.equal(line('bounced', 'gone@one.test')?.class, 'invalid-recipient');
    assert.equal(line('deferred', 'slow@one.test')?.class, 'rate-limited');
    const rl = line('deferred', 'rl@one.test');
    assert.equal(rl?.class, 'rate-limited', 'a 5xx throttle is deferred, not bounced');
    assert.equal(rl?.status, '4.7.1');
    assert.equal(line('bounced', 'rl@one.test'), undefined);
  });

  it('counts outcomes by class', async () => {
    const text = await relay.relay.metrics.registry.getSingleMetricAsString('sluice_delivery_outcomes_total');
    assert.match(text, /result="bounced",class="invalid-recipient"} 1\n/);
    assert.match(text, /result="deferred",class="rate-limited"} 2\n/);
    assert.match(text, /result="delivered",class="accepted"} 1\n/);
  });

  it('names the class in the bounce the sender gets', () => {
    const dsn = senderMx.messages[0]?.raw.toString() ?? '';
    assert.match(dsn, /<gone@one\.test>: host mx\.one\.test said: 550 5\.1\.1 The email/);
    assert.match(dsn, /\r\n {4}Reason: invalid-recipient\r\n/);
    assert.match(
      dsn,
      /Final-Recipient: rfc822; gone@one\.test\r\n[\s\S]*X-Sluice-Class: invalid-recipient\r\n/,
    );
    assert.doesNotMatch(
      dsn,
      /Final-Recipient: rfc822; rl@one\.test/,
      'the throttled recipient is not bounced',
    );
  });

  it("counts each user's deliveries by result and class in the usage report", async () => {
    await waitFor(
      'the attempt is recorded',
      () => relay.logs.events('deferred').length >= 2 && relay.logs.events('delivered').length >= 1,
    );
    await relay.relay.usage?.flush();
    const res = await fetch(`http://127.0.0.1:${relay.relay.adminPort}/usage?period=hour&user=alice`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const body = (await res.json()) as UsageResponse;
    assert.deepEqual(body.rows[0]?.deliveries, {
      delivered: { total: 1, classes: { accepted: 1 } },
      deferred: { total: 2, classes: { 'rate-limited': 2 } },
      bounced: { total: 1, classes: { 'invalid-recipient': 1 } },
    });
  });
});
