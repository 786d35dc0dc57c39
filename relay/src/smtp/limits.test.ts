// Size, recipient and sender rules at the SMTP front.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  type TestRelay,
  testUser,
} from '../testing/index.ts';

const PLAIN = { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } };

function session(t: TestRelay, user = 'alice'): Promise<RawSmtpClient> {
  return authenticated(t.port('plain'), user);
}

const rcpts = (n: number) => Array.from({ length: n }, (_, i) => `rcpt${i + 1}@example.net`);
const message = 'Subject: hi\r\n\r\nhello\r\n';

describe('message size', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { ...PLAIN, limits: { maxMessageBytes: 64 * 1024 } } });
  });
  after(() => t.close());

  it('advertises SIZE and refuses a declared size over the limit with 552 5.3.4', async () => {
    const c = await RawSmtpClient.connect(t.port('plain'));
    await c.greeting();
    const ehlo = await c.ehlo();
    assert.ok(ehlo.lines.some((l) => l.endsWith(`SIZE ${64 * 1024}`)));
    await c.authPlain('alice', PASSWORD);
    const r = await c.command(`MAIL FROM:<alice@example.com> SIZE=${64 * 1024 + 1}`);
    assert.equal(r.code, 552);
    assert.match(r.text, /^5\.3\.4 /);
    const ok = await c.command(`MAIL FROM:<alice@example.com> SIZE=${64 * 1024}`);
    assert.equal(ok.code, 250);
    await c.quit();
  });

  it('drains a streamed body over the limit, answers 552 5.3.4 and spools nothing', async () => {
    const c = await session(t);
    const big = `Subject: big\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(100);
    const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], big);
    const last = replies.at(-1);
    assert.equal(last?.code, 552);
    assert.match(last?.text ?? '', /^5\.3\.4 /);
    assert.equal((await t.queued()).length, 0);
    // the session goes on: the next message is accepted
    const next = await c.sendRaw('alice@example.com', ['bob@example.net'], message);
    assert.equal(next.at(-1)?.code, 250);
    assert.equal((await t.queued()).length, 1);
    await c.quit();
    const metrics = await t.relay.metrics.registry.getSingleMetricAsString('sluice_smtp_messages_total');
    assert.match(metrics, /result="rejected",reason="message_too_big"} 1/);
  });
});

describe('message size as stored', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { ...PLAIN, limits: { maxMessageBytes: 64 * 1024 } } });
  });
  after(() => t.close());

  it('refuses with 552 5.3.4 a body of bare LFs under the limit that is over it once made CRLF, and keeps nothing', async () => {
    const c = await session(t);
    // 60,013 bytes sent, 90,014 once every LF is CRLF
    const body = `Subject: lf\n\n${'x\n'.repeat(30_000)}`;
    assert.ok(body.length < 64 * 1024);
    const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], body);
    assert.equal(replies.at(-1)?.code, 552);
    assert.match(replies.at(-1)?.text ?? '', /^5\.3\.4 Message size exceeds fixed limit of 65536 bytes/);
    assert.equal((await t.queued()).length, 0);
    await c.quit();
  });

  it('accepts a message whose stored form fits, and stores no more than the limit and its Received header', async () => {
    const c = await session(t);
    // 40,013 bytes sent, 60,014 stored, plus the Received header
    const replies = await c.sendRaw(
      'alice@example.com',
      ['bob@example.net'],
      `Subject: lf\n\n${'x\n'.repeat(20_000)}`,
    );
    assert.equal(replies.at(-1)?.code, 250);
    const queued = (await t.queued()).at(-1);
    assert.ok(queued && queued.envelope.size === queued.body.length);
    const received = receivedHeaderLength(queued.body);
    assert.ok(
      received > 0 && queued.body.length - received <= 64 * 1024,
      `${queued.body.length} bytes stored`,
    );
    await c.quit();
  });

  it('accepts a message of exactly the limit: the Received header the relay adds does not count', async () => {
    const c = await session(t);
    const head =
      'Subject: exact\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-ID: <exact@example.com>\r\n\r\n';
    const body = `${head}${'y'.repeat(64 * 1024 - head.length - 2)}\r\n`;
    assert.equal(Buffer.byteLength(body), 64 * 1024);
    const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], body);
    assert.equal(replies.at(-1)?.code, 250);
    const queued = (await t.queued()).at(-1);
    assert.ok(queued);
    assert.equal(queued.body.length - receivedHeaderLength(queued.body), 64 * 1024);
    await c.quit();
  });
});

/** Bytes of the Received header the relay put in front of a stored message. */
function receivedHeaderLength(stored: string | Buffer): number {
  const text = stored.toString();
  const match = /^Received: [\s\S]*?\r\n(?![ \t])/.exec(text);
  return match ? Buffer.byteLength(match[0]) : 0;
}

describe('MIME structure', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: PLAIN });
  });
  after(() => t.close());

  async function refused(body: string): Promise<{ code: number | undefined; text: string | undefined }> {
    const c = await session(t);
    const last = (await c.sendRaw('alice@example.com', ['bob@example.net'], body)).at(-1);
    await c.quit();
    return { code: last?.code, text: last?.text };
  }

  it('refuses a header of 100,000 folded lines with 552 5.3.4 and keeps nothing', async () => {
    const body = `From: a@example.com\r\nSubject: x\r\n${' a\r\n'.repeat(100_000)}\r\nbody\r\n`;
    assert.deepEqual(await refused(body), {
      code: 552,
      text: '5.3.4 Message header too big: more than 10000 lines in the header of the message or of a part',
    });
    assert.equal((await t.queued()).length, 0);
    const metrics = await t.relay.metrics.registry.getSingleMetricAsString('sluice_smtp_messages_total');
    assert.match(metrics, /result="rejected",reason="header_too_big"} 1/);
  });

  it('refuses multiparts nested deeper than 100 levels with 554 5.6.0', async () => {
    let inner = 'Content-Type: text/plain\r\n\r\nhi\r\n';
    for (let level = 101; level > 0; level--) {
      inner = `Content-Type: multipart/mixed; boundary="b${level}"\r\n\r\n--b${level}\r\n${inner}\r\n--b${level}--\r\n`;
    }
    assert.deepEqual(await refused(`From: a@example.com\r\n${inner}`), {
      code: 554,
      text: '5.6.0 Message structure too complex: more than 100 levels of MIME nesting',
    });
  });

  it('refuses a file name in 10,000 RFC 2231 continuations with 554 5.6.0', async () => {
    const continuations = Array.from({ length: 10_000 }, (_, i) => `;\r\n filename*${i}*=a`).join('');
    const body = `From: a@example.com\r\nContent-Disposition: attachment${continuations}\r\n\r\nx\r\n`;
    assert.deepEqual(await refused(body), {
      code: 554,
      text: '5.6.0 Message structure too complex: more than 256 parameters in the Content-Type and Content-Disposition fields of a part',
    });
  });

  it('refuses more than 1000 parts with 554 5.6.0', async () => {
    const part = '--b\r\nContent-Type: text/plain\r\n\r\nx\r\n';
    const body = `From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${part.repeat(1000)}--b--\r\n`;
    assert.deepEqual(await refused(body), {
      code: 554,
      text: '5.6.0 Message structure too complex: more than 1000 MIME parts',
    });
    assert.equal((await t.queued()).length, 0);
  });
});

describe('recipient limit', () => {
  it('accepts 30 recipients and answers each further RCPT with 452 4.5.3', async () => {
    const t = await startTestRelay({ config: PLAIN });
    try {
      const c = await session(t);
      const replies = await c.sendRaw('alice@example.com', rcpts(32), message);
      const rcptReplies = replies.slice(1, 33);
      assert.deepEqual(
        rcptReplies.map((r) => r.code),
        [...Array(30).fill(250), 452, 452],
      );
      assert.match(rcptReplies[30]?.text ?? '', /^4\.5\.3 Too many recipients, at most 30/);
      assert.equal(replies.at(-1)?.code, 250);
      const [queued] = await t.queued();
      assert.deepEqual(
        queued?.envelope.recipients.map((r) => r.address),
        rcpts(30),
      );
      // a well-behaved client sends the rest in a new transaction
      const rest = await c.sendRaw('alice@example.com', rcpts(32).slice(30), message);
      assert.equal(rest.at(-1)?.code, 250);
      await c.quit();
      const metrics = await t.relay.metrics.registry.getSingleMetricAsString('sluice_smtp_recipients_total');
      assert.match(metrics, /result="rejected"} 2/);
      assert.match(metrics, /result="accepted"} 32/);
    } finally {
      await t.close();
    }
  });

  it('in truncate mode accepts every RCPT and delivers only to the first N', async () => {
    const t = await startTestRelay({
      config: { ...PLAIN, limits: { maxRecipients: 3, recipientOverflow: 'truncate' } },
    });
    try {
      const c = await session(t);
      const replies = await c.sendRaw('alice@example.com', rcpts(5), message);
      assert.deepEqual(
        replies.map((r) => r.code),
        [250, 250, 250, 250, 250, 250, 354, 250],
      );
      const [queued] = await t.queued();
      assert.deepEqual(
        queued?.envelope.recipients.map((r) => r.address),
        rcpts(3),
      );
      assert.equal(queued?.envelope.droppedRecipients, 2);
      await c.quit();
    } finally {
      await t.close();
    }
  });
});

describe('allowed senders', () => {
  it('refuses MAIL FROM outside the user list with 553 5.7.1', async () => {
    const t = await startTestRelay({
      config: PLAIN,
      users: [await testUser('shop', { allowedSenders: ['@shop.test', 'billing@corp.test'] })],
    });
    try {
      const c = await session(t, 'shop');
      const bad = await c.command('MAIL FROM:<ceo@corp.test>');
      assert.equal(bad.code, 553);
      assert.equal(bad.text, '5.7.1 Sender address <ceo@corp.test> is not allowed for user shop');
      assert.equal((await c.command('MAIL FROM:<Orders@SHOP.test>')).code, 250);
      assert.equal((await c.command('RSET')).code, 250);
      assert.equal((await c.command('MAIL FROM:<billing@corp.test>')).code, 250);
      await c.quit();
      const rejected = t.logs.events('rejected').find((l) => l.reason === 'sender_not_allowed');
      assert.equal(rejected?.user, 'shop');
      assert.equal(rejected?.sender, 'ceo@corp.test');
    } finally {
      await t.close();
    }
  });
});
