// Suppression, shared: relay A delivers and gets a 550 5.1.1 for a recipient; relay B,
// sharing A's Redis, then refuses that recipient at RCPT with 550 5.1.1 saying why and
// since when. The admin API and the CLI list it and lift it; a bounce of another class
// suppresses nothing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { SuppressionsResponse } from '../src/admin/suppression-api.ts';
import { runSuppressionCli } from '../src/cli/suppression.ts';
import {
  authenticated,
  PLAIN_LISTENER,
  type RedisServerHandle,
  type SmtpSink,
  startDnsServer,
  startRedisServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

const TOKEN = 'suppression-token';

async function rcptReplies(t: TestRelay, to: string[]): Promise<Array<{ code: number; text: string }>> {
  const c = await authenticated(t.port('plain'), 'alice');
  const replies = await c.sendRaw('alice@sender.test', to, 'Subject: s\r\n\r\nx\r\n');
  await c.quit();
  return replies.slice(1, 1 + to.length).map((r) => ({ code: r.code, text: r.text }));
}

async function cli(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (c: Buffer) => out.push(c.toString()));
  stderr.on('data', (c: Buffer) => err.push(c.toString()));
  const code = await runSuppressionCli(args, { stdout, stderr, url, token: TOKEN });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('suppression shared by two relays', () => {
  let redis: RedisServerHandle;
  let dns: TestDnsServer;
  let mx: SmtpSink;
  let a: TestRelay;
  let b: TestRelay;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-suppression-'));
    await writeFile(join(dir, 'token'), TOKEN);
    redis = await startRedisServer();
    dns = await startDnsServer();
    mx = await startSmtpSink({ host: '127.0.0.2' });
    dns.setMx('one.test', [{ exchange: 'mx.one.test', priority: 10 }]);
    dns.setA('mx.one.test', ['127.0.0.2']);
    mx.setRecipientReply('gone@one.test', { code: 550, text: '5.1.1 <gone@one.test>: user does not exist' });
    mx.setRecipientReply('full@one.test', { code: 552, text: '5.2.2 <full@one.test>: user is over quota' });
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
      state: { backend: 'redis', namespace: 'supp', redis: { nodes: redis.nodes } },
      delivery: { resolvers: [dns.address], port: mx.port, allowLocalAddresses: true },
      suppression: { ttlSeconds: 3600 },
    };
    a = await startTestRelay({ deliver: true, config });
    b = await startTestRelay({ deliver: false, config });
  });
  after(async () => {
    await a.close();
    await b.close();
    await mx.close();
    await dns.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a recipient that bounced as invalid on the other relay, saying why and since when', async () => {
    assert.deepEqual(
      (await rcptReplies(a, ['gone@one.test', 'full@one.test'])).map((r) => r.code),
      [250, 250],
    );
    await waitFor('the bounce suppresses', () => a.logs.events('recipient_suppressed').length === 1);
    const bouncedHere = () =>
      a.logs.events('bounced').filter((l) => String(l.recipient).endsWith('@one.test')).length;
    await waitFor('both recipients bounce', () => bouncedHere() === 2);
    const [gone, full] = await rcptReplies(b, ['gone@one.test', 'full@one.test']);
    assert.equal(gone?.code, 550);
    assert.match(
      gone?.text ?? '',
      /^5\.1\.1 Recipient <gone@one\.test> is suppressed: mail to it bounced \(invalid-recipient: 550 5\.1\.1 <gone@one\.test>: user does not exist\) on \d{4}-\d\d-\d\dT[\d:.]+Z; refused until /,
    );
    assert.equal(full?.code, 250, 'a mailbox-full bounce suppresses nothing');
    const refused = b.logs.events('rejected').find((l) => l.reason === 'recipient_suppressed');
    assert.equal(refused?.recipient, 'gone@one.test');
    const metrics = await b.relay.metrics.registry.getSingleMetricAsString('sluice_smtp_rejections_total');
    assert.match(metrics, /reason="recipient_suppressed",stage="rcpt"} 1/);
  });

  it('looks up a pipelined batch of recipients in one Redis call and answers it in one write', async () => {
    // Redis's own view: every command the relays send, with its arguments
    const client = new Redis(redis.port);
    const monitor = await client.monitor();
    const lookups: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      // script calls only (the monitor also shows the commands a script runs)
      const script = /^eval(sha)?$/i.test(args[0] ?? '');
      if (script && args.some((a) => a.endsWith('suppression:recipients:expiry'))) lookups.push(args);
    });
    try {
      const c = await authenticated(b.port('plain'), 'alice');
      const readsBefore = c.reads;
      c.write(
        'MAIL FROM:<alice@sender.test>\r\nRCPT TO:<new@one.test>\r\nRCPT TO:<GONE@one.test>\r\n' +
          'RCPT TO:<full@one.test>\r\nDATA\r\n',
      );
      const replies = [];
      for (let i = 0; i < 5; i++) replies.push(await c.reply());
      assert.deepEqual(
        replies.map((r) => r.code),
        [250, 250, 550, 250, 354],
      );
      assert.match(
        replies[2]?.text ?? '',
        /^5\.1\.1 Recipient <GONE@one\.test> is suppressed: mail to it bounced/,
      );
      assert.equal(c.reads - readsBefore, 1, 'the five replies leave in one write');
      c.write('Subject: batch\r\n\r\nbody\r\n.\r\n');
      const queued = await c.reply();
      assert.equal(queued.code, 250);
      await c.quit();
      const id = queued.text.split(' ').pop();
      const stored = (await b.queued()).find((m) => m.envelope.queueId === id);
      assert.deepEqual(
        stored?.envelope.recipients.map((r) => r.address),
        ['new@one.test', 'full@one.test'],
      );
      await waitFor('the monitor to see the lookup', () => lookups.length > 0);
      assert.equal(
        lookups.length,
        1,
        `one lookup for the batch: ${JSON.stringify(lookups.map((a) => a.slice(-3)))}`,
      );
      assert.deepEqual(lookups[0]?.slice(-3), ['new@one.test', 'gone@one.test', 'full@one.test']);
    } finally {
      monitor.disconnect();
      client.disconnect();
    }
  });

  it('lists and removes suppressions through the admin API and the CLI', async () => {
    const url = `http://127.0.0.1:${b.relay.adminPort}`;
    const res = await fetch(`${url}/suppressions`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await res.json()) as SuppressionsResponse;
    assert.deepEqual(
      body.suppressions.map((s) => [s.address, s.class, s.user]),
      [['gone@one.test', 'invalid-recipient', 'alice']],
    );
    const listed = await cli(['list'], url);
    assert.equal(listed.code, 0);
    assert.match(
      listed.stdout,
      /^gone@one\.test {2}invalid-recipient {2}since .* user alice {2}550 5\.1\.1/m,
    );
    assert.match(listed.stdout, /1 suppressed\n$/);
    const removed = await cli(['remove', 'Gone@one.test'], url);
    assert.deepEqual([removed.code, removed.stdout], [0, 'Gone@one.test: suppression removed\n']);
    const again = await cli(['remove', 'gone@one.test'], url);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not suppressed \(HTTP 404\)/);
    assert.deepEqual(
      (await rcptReplies(b, ['gone@one.test'])).map((r) => r.code),
      [250],
      'accepted again once lifted',
    );
  });
});
