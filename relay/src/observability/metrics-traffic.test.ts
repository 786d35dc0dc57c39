// Counters read from /metrics move by exactly what real SMTP traffic did: messages,
// recipients and bytes of accepted mail, an AUTH failure, a blocked attachment, and TLS
// connections by listener and protocol version (STARTTLS and implicit TLS); the wait for
// the reply after DATA and the spool commit within it are timed once per message.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { readSpooled } from '../spool/message-file.ts';
import { PASSWORD, RawSmtpClient, startTestRelay, type TestRelay, waitFor } from '../testing/index.ts';
import { type Scrape, scrapeMetrics } from '../testing/metrics-scrape.ts';

const BLOCKED = [
  'Subject: invoice',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b"',
  '',
  '--b',
  'Content-Type: text/plain',
  '',
  'see attached',
  '--b',
  'Content-Type: application/octet-stream',
  'Content-Disposition: attachment; filename="invoice.pdf.scr"',
  '',
  'MZ',
  '--b--',
  '',
].join('\r\n');

describe('counters after real SMTP traffic', () => {
  let relay: TestRelay;

  before(async () => {
    relay = await startTestRelay(); // submission (STARTTLS) and smtps (implicit TLS)
  });
  after(() => relay.close());

  const scrape = () => scrapeMetrics(relay.relay.adminPort);
  /** How much each named series moved between two scrapes. */
  function moved(a: Scrape, b: Scrape, name: string, labels: Record<string, string> = {}): number {
    return b.value(name, labels) - a.value(name, labels);
  }

  async function submission(): Promise<RawSmtpClient> {
    const client = await RawSmtpClient.connect(relay.port('submission'));
    await client.greeting();
    await client.ehlo();
    await client.starttls();
    return client;
  }

  it('counts 3 accepted messages of 2 recipients: +3 messages, +6 recipients, +their exact bytes', async () => {
    const before = await scrape();
    const started = performance.now();
    const client = await submission();
    assert.equal((await client.authPlain('alice', PASSWORD)).code, 235);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const body = `Subject: message ${i}\r\n\r\n${'x'.repeat(100 * (i + 1))}\r\n`;
      const done = (await client.sendRaw('alice@sender.test', ['a@one.test', 'b@two.test'], body)).at(-1);
      assert.equal(done?.code, 250);
      ids.push(/queued as (\S+)/.exec(done?.text ?? '')?.[1] ?? '');
    }
    await client.quit();
    // what the spool holds, with the Received header the relay added
    let bytes = 0;
    for (const id of ids) bytes += (await readSpooled(relay.relay.spool.queueDir, id)).body.length;
    await waitFor(
      'the connection is closed',
      async () => (await scrape()).value('sluice_smtp_connections_open', { listener: 'submission' }) === 0,
    );
    const after = await scrape();
    const elapsed = (performance.now() - started) / 1000;

    const messages = 'sluice_smtp_messages_total';
    assert.equal(moved(before, after, messages, { result: 'accepted', reason: 'accepted' }), 3);
    // the wait for each 250 after the final dot, of which making the message durable is a part
    const reply = 'sluice_smtp_data_reply_seconds';
    assert.equal(moved(before, after, `${reply}_count`, { result: 'accepted' }), 3);
    assert.equal(moved(before, after, `${reply}_count`), 3, 'one reply time per message');
    const replySeconds = moved(before, after, `${reply}_sum`, { result: 'accepted' });
    assert.equal(moved(before, after, 'sluice_spool_commit_seconds_count'), 3);
    const commitSeconds = moved(before, after, 'sluice_spool_commit_seconds_sum');
    assert.ok(commitSeconds > 0, 'the commits were timed');
    assert.ok(
      commitSeconds <= replySeconds,
      `commits ${commitSeconds} s within the replies' ${replySeconds} s`,
    );
    assert.ok(replySeconds < elapsed, `replies ${replySeconds} s within the ${elapsed} s the test took`);
    assert.equal(moved(before, after, messages), 3, 'nothing else at end of DATA');
    assert.equal(moved(before, after, 'sluice_smtp_recipients_total', { result: 'accepted' }), 6);
    assert.equal(moved(before, after, 'sluice_smtp_received_bytes_total'), bytes);
    assert.equal(moved(before, after, 'sluice_smtp_message_size_bytes_count'), 3);
    assert.equal(moved(before, after, 'sluice_smtp_message_size_bytes_sum'), bytes);
    assert.equal(moved(before, after, 'sluice_smtp_auth_total', { result: 'success' }), 1);
    assert.equal(moved(before, after, 'sluice_smtp_connections_total', { listener: 'submission' }), 1);
    assert.equal(moved(before, after, 'sluice_smtp_rejections_total'), 0);
    const tlsv13 = { listener: 'submission', version: 'TLSv1.3' };
    assert.equal(moved(before, after, 'sluice_smtp_tls_connections_total', tlsv13), 1, 'STARTTLS counted');
  });

  it('counts an AUTH failure and a blocked attachment once each, with their reasons', async () => {
    const before = await scrape();
    const client = await submission();
    assert.equal((await client.authPlain('alice', 'not the password')).code, 535);
    assert.equal((await client.authPlain('alice', PASSWORD)).code, 235);
    const done = (await client.sendRaw('alice@sender.test', ['a@one.test'], BLOCKED)).at(-1);
    assert.equal(done?.code, 550);
    await client.quit();
    const after = await scrape();

    assert.equal(moved(before, after, 'sluice_smtp_auth_total', { result: 'failure' }), 1);
    assert.equal(moved(before, after, 'sluice_smtp_auth_total', { result: 'success' }), 1);
    const rejections = 'sluice_smtp_rejections_total';
    assert.equal(moved(before, after, rejections, { reason: 'auth_failed', stage: 'auth' }), 1);
    assert.equal(moved(before, after, rejections, { reason: 'blocked_attachment', stage: 'data' }), 1);
    assert.equal(moved(before, after, rejections), 2, 'no other refusal');
    const messages = 'sluice_smtp_messages_total';
    assert.equal(moved(before, after, messages, { result: 'rejected', reason: 'blocked_attachment' }), 1);
    assert.equal(moved(before, after, messages, { result: 'accepted' }), 0);
    const reply = 'sluice_smtp_data_reply_seconds_count';
    assert.equal(moved(before, after, reply, { result: 'rejected' }), 1, 'the 550 is timed as rejected');
    assert.equal(moved(before, after, reply), 1);
    assert.equal(moved(before, after, 'sluice_spool_commit_seconds_count'), 0, 'nothing committed');
    assert.equal(
      moved(before, after, 'sluice_smtp_received_bytes_total'),
      0,
      'refused bytes are not counted',
    );
  });

  it('counts implicit TLS connections by the protocol version the client negotiated', async () => {
    const before = await scrape();
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: relay.port('smtps'),
        maxVersion,
        rejectUnauthorized: false,
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve).once('error', reject);
      });
      const client = RawSmtpClient.wrap(socket);
      assert.equal((await client.greeting()).code, 220);
      await client.quit();
    }
    const after = await scrape();
    const tlsTotal = 'sluice_smtp_tls_connections_total';
    assert.equal(moved(before, after, tlsTotal, { listener: 'smtps', version: 'TLSv1.2' }), 1);
    assert.equal(moved(before, after, tlsTotal, { listener: 'smtps', version: 'TLSv1.3' }), 1);
    assert.equal(moved(before, after, tlsTotal, { listener: 'submission' }), 0);
    assert.equal(moved(before, after, 'sluice_smtp_connections_total', { listener: 'smtps' }), 2);
  });
});
