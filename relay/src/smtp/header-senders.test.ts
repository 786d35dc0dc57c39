// Header From and Sender authorization (senders.headerFrom: enforce), driven through a real
// relay by a real SMTP client: the reply at the end of DATA, the log line and the counter.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { RelayConfig } from '../config/schema.ts';
import { validateRelayConfig } from '../config/validate.ts';
import { authenticated, PLAIN_LISTENER, startTestRelay, type TestRelay, testUser } from '../testing/index.ts';

async function sendHeader(
  t: TestRelay,
  user: string,
  header: string,
): Promise<{ code: number; text: string }> {
  const c = await authenticated(t.port('plain'), user);
  try {
    // carol's allowedSenders hold MAIL FROM too
    const envelope = user === 'carol' ? 'carol@own.example' : 'bounce@customer.example';
    assert.equal((await c.command(`MAIL FROM:<${envelope}>`)).code, 250);
    assert.equal((await c.command('RCPT TO:<bob@elsewhere.example>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${header}To: bob@elsewhere.example\r\nSubject: hello\r\n\r\nbody\r\n.\r\n`);
    const reply = await c.reply();
    await c.quit();
    return reply;
  } finally {
    c.destroy();
  }
}

describe('header From authorization', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        senders: {
          headerFrom: 'enforce',
          domains: [
            { domain: 'customer.example', users: ['alice'] },
            { domain: 'shared.example' },
            { domain: 'xn--bcher-kva.example' },
          ],
        },
      },
      users: [
        await testUser('alice'),
        await testUser('carol', { allowedSenders: ['carol@own.example', '@carol.example'] }),
      ],
    });
  });
  after(() => t.close());

  it('accepts addresses of a sending domain admitting the user, of an open one, and of allowedSenders', async () => {
    for (const [user, header] of [
      ['alice', 'From: Alice <alice@customer.example>\r\n'],
      ['alice', 'From: =?utf-8?B?QWxpY2Ugw5xi?= <ALICE@Customer.Example>\r\n'],
      ['alice', 'From: news@shared.example\r\nSender: alice@customer.example\r\n'],
      [
        'alice',
        'From: a@customer.example, "x@evil.example" <b@shared.example>\r\nSender: a@customer.example\r\n',
      ],
      ['alice', 'From: Team: a@customer.example, b@shared.example;\r\n'],
      ['alice', 'From: info@bücher.example\r\n'],
      ['carol', 'From: carol@own.example\r\n'],
      ['carol', 'From: anyone@carol.example\r\nSender: boss@shared.example\r\n'],
    ] as const) {
      const reply = await sendHeader(t, user, header);
      assert.equal(reply.code, 250, `${user} ${header}: ${reply.text}`);
    }
  });

  it('refuses a From or Sender address the user may not use, naming it, with 550 5.7.1', async () => {
    const cases = [
      ['carol', 'From: Carol <carol@customer.example>\r\n', 'From', 'carol@customer.example'],
      [
        'alice',
        'From: alice@customer.example, ceo@bank.example\r\nSender: alice@customer.example\r\n',
        'From',
        'ceo@bank.example',
      ],
      ['alice', 'From: "alice@customer.example" <ceo@bank.example>\r\n', 'From', 'ceo@bank.example'],
      ['alice', 'From: Team: a@customer.example, ceo@bank.example;\r\n', 'From', 'ceo@bank.example'],
      ['alice', 'From: alice@customer.example\r\nSender: ceo@bank.example\r\n', 'Sender', 'ceo@bank.example'],
      ['alice', 'From: alice@customer.example\r\nFrom: ceo@bank.example\r\n', 'From', 'ceo@bank.example'],
      ['alice', 'From: someone@sub.customer.example\r\n', 'From', 'someone@sub.customer.example'],
    ] as const;
    const kept = (await t.relay.spool.list()).length;
    for (const [user, header, field, address] of cases) {
      const reply = await sendHeader(t, user, header);
      assert.equal(reply.code, 550, header);
      assert.match(reply.text, /^5\.7\.1 /);
      assert.ok(
        reply.text.includes(`Header ${field} address <${address}> is not allowed for user ${user}`),
        reply.text,
      );
    }
    const logged = t.logs.events('rejected').filter((l) => l.reason === 'header_sender_not_allowed');
    assert.equal(logged.length, cases.length);
    assert.equal(logged[0]?.stage, 'data');
    const counted = await t.relay.metrics.rejectionsTotal.get();
    assert.equal(
      counted.values.find((v) => v.labels.reason === 'header_sender_not_allowed' && v.labels.stage === 'data')
        ?.value,
      cases.length,
    );
    assert.equal((await t.relay.spool.list()).length, kept, 'nothing refused was kept');
  });

  it('refuses a message without a From address with 550 5.6.0', async () => {
    for (const header of [
      '',
      'From: undisclosed-senders:;\r\n',
      'From: =?utf-8?q?alice=40customer.example?=\r\n',
      'From: Alice\r\n',
    ]) {
      const reply = await sendHeader(t, 'alice', header);
      assert.equal(reply.code, 550, JSON.stringify(header));
      assert.match(reply.text, /^5\.6\.0 Message has no From address/);
    }
    assert.ok(t.logs.events('rejected').some((l) => l.reason === 'header_from_missing'));
  });

  it('a real client (nodemailer) sees the refusal naming the address', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: t.port('plain'),
      secure: false,
      ignoreTLS: true,
      auth: { user: 'carol', pass: 'correct horse battery staple' },
    });
    await assert.rejects(
      transport.sendMail({
        envelope: { from: 'carol@own.example', to: ['bob@elsewhere.example'] },
        from: 'Boss <boss@customer.example>',
        to: 'bob@elsewhere.example',
        subject: 'hi',
        text: 'hi',
      }),
      (err: { responseCode?: number; response?: string }) =>
        err.responseCode === 550 &&
        /<boss@customer\.example> is not allowed for user carol/.test(err.response ?? ''),
    );
    transport.close();
  });
});

describe('header From authorization on reload', () => {
  it('off by default; enforce applies to the next message after a reload, and off again after another', async () => {
    const t = await startTestRelay({
      config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } },
    });
    try {
      assert.equal((await sendHeader(t, 'alice', 'From: ceo@bank.example\r\n')).code, 250);
      const users = { users: [...t.relay.users.values()] };
      const enforce: RelayConfig = validateRelayConfig(
        { ...t.relay.config, senders: { headerFrom: 'enforce', domains: [{ domain: 'customer.example' }] } },
        'reloaded',
      );
      await t.relay.apply(enforce, users);
      const refused = await sendHeader(t, 'alice', 'From: ceo@bank.example\r\n');
      assert.equal(refused.code, 550);
      assert.equal((await sendHeader(t, 'alice', 'From: alice@customer.example\r\n')).code, 250);
      await t.relay.apply(validateRelayConfig({ ...t.relay.config, senders: {} }, 'reloaded'), users);
      assert.equal((await sendHeader(t, 'alice', 'From: ceo@bank.example\r\n')).code, 250);
    } finally {
      await t.close();
    }
  });
});

describe('header From authorization and the handoff account', () => {
  it('mail a draining peer hands on is not checked again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-handoff-'));
    await writeFile(join(dir, 'password'), 'correct horse battery staple');
    const t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        senders: { headerFrom: 'enforce', domains: [{ domain: 'customer.example', users: ['alice'] }] },
        drain: {
          handoff: {
            host: '127.0.0.1',
            port: 2525,
            username: 'sluice-handoff',
            passwordFile: join(dir, 'password'),
            fromNetworks: ['127.0.0.0/8'],
          },
        },
      },
      users: [await testUser('alice'), await testUser('sluice-handoff'), await testUser('mallory')],
    });
    try {
      assert.equal((await sendHeader(t, 'sluice-handoff', 'From: ceo@bank.example\r\n')).code, 250);
      assert.equal((await sendHeader(t, 'mallory', 'From: ceo@bank.example\r\n')).code, 550);
    } finally {
      await t.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
