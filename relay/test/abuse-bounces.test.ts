// Abuse detection from what remote servers answer: a relay delivers to a real sink that
// answers 550 5.1.1 for most of one user's recipients and a Spamhaus block for another's;
// one evaluation flags each user by the class of their bounces (a log event, a metric and
// GET /abuse); a third user with ordinary bounces, and a fourth whose list bounced as much
// the hour before, are not flagged.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
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

async function send(t: TestRelay, user: string, to: string[]): Promise<void> {
  const c = await authenticated(t.port('plain'), user);
  const replies = await c.sendRaw(`${user}@sender.test`, to, 'Subject: s\r\n\r\nx\r\n');
  await c.quit();
  assert.equal(replies.at(-1)?.code, 250);
}

describe('abuse flags from bounce classes', () => {
  let dns: TestDnsServer;
  let mx: SmtpSink;
  let t: TestRelay;
  const NOW = Date.parse('2025-07-01T10:59:00Z');
  let now = NOW;
  before(async () => {
    dns = await startDnsServer();
    mx = await startSmtpSink({ host: '127.0.0.2' });
    dns.setMx('one.test', [{ exchange: 'mx.one.test', priority: 10 }]);
    dns.setA('mx.one.test', ['127.0.0.2']);
    for (const gone of ['old0', 'old1', 'old2', 'new0', 'new1', 'new2', 'new3']) {
      mx.setRecipientReply(`${gone}@one.test`, {
        code: 550,
        text: '5.1.1 <x>: Recipient address rejected: User unknown',
      });
    }
    for (let i = 0; i < 4; i++) {
      mx.setRecipientReply(`gone${i}@one.test`, {
        code: 550,
        text: '5.1.1 <x>: Recipient address rejected: User unknown',
      });
    }
    mx.setRecipientReply('bl@one.test', {
      code: 554,
      text: '5.7.1 Service unavailable; Client host [203.0.113.7] blocked using zen.spamhaus.org',
    });
    mx.setRecipientReply('full@one.test', { code: 552, text: '5.2.2 mailbox full' });
    t = await startTestRelay({
      deliver: true,
      now: () => now,
      users: [
        await testUser('frank'),
        await testUser('gina'),
        await testUser('hank'),
        await testUser('ivan'),
      ],
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        usage: { flushIntervalSeconds: 60 },
        abuse: { minAttempts: 4, intervalSeconds: 3600, invalidRecipientRatio: 0.5, spamBlockRatio: 0.2 },
        delivery: { resolvers: [dns.address], port: mx.port, allowLocalAddresses: true },
      },
    });
    // ivan, two hours ago: 3 of 5 recipients do not exist (his list is like that)
    now = NOW - 2 * 3600_000;
    await send(t, 'ivan', ['old0@one.test', 'old1@one.test', 'old2@one.test', 'h@one.test', 'i@one.test']);
    await waitFor("ivan's message delivered or bounced", () => t.logs.events('message_done').length >= 1);
    await t.relay.usage?.flush();
    now = NOW;
    // this hour ivan bounces 4 of 5: over the ratio, but not twice his own share before
    await send(t, 'ivan', ['new0@one.test', 'new1@one.test', 'new2@one.test', 'new3@one.test', 'j@one.test']);
    // frank: 4 of 5 recipients do not exist; gina: 1 of 4 blocked as spam; hank: 1 of 4 mailbox full
    await send(t, 'frank', [
      'gone0@one.test',
      'gone1@one.test',
      'gone2@one.test',
      'gone3@one.test',
      'a@one.test',
    ]);
    await send(t, 'gina', ['bl@one.test', 'b@one.test', 'c@one.test', 'd@one.test']);
    await send(t, 'hank', ['full@one.test', 'e@one.test', 'f@one.test', 'g@one.test']);
    const finished = (user: string) =>
      t.logs.events('delivery_attempt').length >= 5 &&
      t.logs.events('message_done').length >= 5 &&
      user.length > 0;
    await waitFor('the five messages are delivered or bounced', () => finished('all'));
    await t.relay.usage?.flush();
  });
  after(async () => {
    await t.close();
    await mx.close();
    await dns.close();
  });

  it('flags the users whose invalid-recipient or spam-block share jumps, and no one else', async () => {
    const found = await t.relay.abuse?.tick();
    assert.deepEqual(found?.map((f) => [f.user, f.kind, f.numbers.ratio]).sort(), [
      ['frank', 'invalid_recipients', 0.8],
      ['gina', 'spam_blocked', 0.25],
    ]);
    const events = t.logs.events('abuse_suspected');
    assert.deepEqual(events.map((e) => [e.user, e.reason]).sort(), [
      ['frank', 'InvalidRecipients'],
      ['gina', 'SpamBlocked'],
    ]);
    assert.equal(
      events.find((e) => e.user === 'frank')?.msg,
      '4 of 5 recipients in the last hour bounced as invalid recipients (more than 50 %)',
    );
    const text = await t.relay.metrics.registry.getSingleMetricAsString('sluice_abuse_flags_total');
    assert.match(text, /kind="invalid_recipients"} 1/);
    assert.match(text, /kind="spam_blocked"} 1/);
  });
});
