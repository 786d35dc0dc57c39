// A relay that starts over a large queue takes mail before it has looked at all of it:
// the scan of the spool goes on in the background, and every message in the spool, and
// every message accepted meanwhile, is delivered all the same. The queue listing comes
// in pages and takes filters, through the admin API and the CLI.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { QueueListResponse } from '../src/admin/queue-api.ts';
import { runQueueCli } from '../src/cli/queue.ts';
import { newQueueId } from '../src/spool/queue-id.ts';
import { Spool } from '../src/spool/spool.ts';
import { spooledEnvelope } from '../src/testing/envelope.ts';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startSmtpSink,
  startTestRelay,
  waitFor,
} from '../src/testing/index.ts';
import { freePort } from '../src/testing/ports.ts';

/** Writes messages into a spool as the SMTP side does, while no relay runs on it. */
async function seed(
  spoolDir: string,
  messages: Array<{ queueId: string; sender: string; recipients: string[]; subject: string }>,
): Promise<void> {
  const spool = new Spool({ dir: spoolDir, fsync: false, fileThread: false });
  await spool.init();
  for (const m of messages) {
    const writer = spool.createWriter(m.queueId);
    writer.end(`Subject: ${m.subject}\r\n\r\nbody\r\n`);
    await writer.commit(
      spooledEnvelope({
        queueId: m.queueId,
        receivedAt: new Date(Number.parseInt(m.queueId.slice(0, 9), 36)).toISOString(),
        sender: m.sender,
        recipients: m.recipients.map((address) => ({ address, state: 'pending' })),
      }),
    );
  }
}

function smarthost(port: number) {
  return { mode: 'smarthost', smarthost: { host: '127.0.0.1', port, tls: 'none' } };
}

describe('a relay over a large queue', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-backlog-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('answers 220 while the scan of its spool goes on, and delivers every queued message and every new one', async () => {
    const N = 1500;
    const spoolDir = join(dir, 'scan', 'spool');
    const now = Date.now();
    await seed(
      spoolDir,
      Array.from({ length: N }, (_, i) => ({
        queueId: newQueueId(now - 3_600_000 + i),
        sender: 'alice@example.com',
        recipients: [`r${i}@d${i % 7}.test`],
        subject: `queued ${i}`,
      })),
    );
    const sink = await startSmtpSink({ keepBodies: true });
    // one entry of the spool per slice of the scan: it takes at least N turns of the event loop
    const relay = await startTestRelay({
      deliver: true,
      queue: { scanSliceMs: 0 },
      config: {
        spoolDir,
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: smarthost(sink.port),
      },
    });
    let scanned = false;
    void relay.relay.delivery?.scanned.then(() => {
      scanned = true;
    });
    try {
      const client = await RawSmtpClient.connect(relay.port('plain'));
      assert.equal((await client.greeting()).code, 220);
      assert.equal(scanned, false, 'the greeting came before the scan was done');
      assert.deepEqual(relay.logs.events('queue_loaded'), []);
      await client.ehlo();
      await client.authPlain('alice', PASSWORD);
      const replies = await client.sendRaw(
        'alice@example.com',
        ['new@fresh.test'],
        'Subject: new\r\n\r\nx\r\n',
      );
      assert.equal(replies.at(-1)?.code, 250);
      await client.quit();

      await sink.waitForMessages(N + 1, 60_000);
      await waitFor('the queue is empty', () => relay.relay.delivery?.size === 0, { timeoutMs: 10_000 });
      assert.equal(scanned, true);
      const [loaded] = relay.logs.events('queue_loaded');
      assert.equal(loaded?.messages, N);
      const subjects = sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1]);
      const expected = [...Array.from({ length: N }, (_, i) => `queued ${i}`), 'new'];
      assert.deepEqual([...subjects].sort(), expected.sort(), 'each message once');
    } finally {
      await relay.close();
      await sink.close();
    }
  });

  it('lists the queue in pages, filtered by sender, recipient domain, age and state (API and CLI)', async () => {
    const spoolDir = join(dir, 'list', 'spool');
    const now = Date.now();
    const messages = Array.from({ length: 25 }, (_, i) => ({
      // five of them two days old, the rest a minute old
      queueId: newQueueId(i < 5 ? now - 2 * 86_400_000 + i : now - 60_000 + i),
      sender: i % 5 === 0 ? 'Bob@B.test' : 'alice@a.test',
      recipients: i % 2 === 0 ? [`x${i}@x.test`, `y${i}@y.test`] : [`x${i}@x.test`],
      subject: `m${i}`,
    }));
    await seed(spoolDir, messages);
    const ids = messages.map((m) => m.queueId);
    await writeFile(join(dir, 'token'), 'list-token\n');
    // nothing listens at the smarthost: every attempt defers (and no delay notice is sent)
    const started = await startTestRelay({
      deliver: true,
      config: {
        spoolDir,
        listeners: [PLAIN_LISTENER],
        delivery: { ...smarthost(await freePort()), retry: { delayWarningSeconds: 0 } },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
      },
    });
    const url = `http://127.0.0.1:${started.relay.adminPort}`;
    const get = async (query: string): Promise<QueueListResponse> => {
      const response = await fetch(`${url}/queue${query}`, {
        headers: { authorization: 'Bearer list-token' },
      });
      assert.equal(response.status, 200, query);
      return (await response.json()) as QueueListResponse;
    };
    const all = async (query: string): Promise<QueueListResponse['messages']> => {
      const out: QueueListResponse['messages'] = [];
      let cursor: string | null = '';
      while (cursor !== null) {
        const page = await get(`?limit=4${query}${cursor === '' ? '' : `&cursor=${cursor}`}`);
        assert.ok(page.messages.length <= 4);
        out.push(...page.messages);
        cursor = page.next;
      }
      return out;
    };
    try {
      await waitFor(
        'every message tried once and deferred',
        async () => (await all('&state=deferred')).length === 25,
        { timeoutMs: 30_000 },
      );
      await started.relay.delivery?.scanned;
      const first = await get('?limit=10');
      assert.equal(first.total, 25);
      assert.equal(first.scanning, false);
      assert.deepEqual(
        first.messages.map((m) => m.queueId),
        ids.slice(0, 10),
      );
      assert.equal(first.next, ids[9]);
      assert.deepEqual(
        (await all('')).map((m) => m.queueId),
        ids,
        'pages follow one another, oldest first, none twice',
      );
      assert.deepEqual(
        (await all('&sender=bob@b.test')).map((m) => m.queueId),
        ids.filter((_, i) => i % 5 === 0),
      );
      assert.deepEqual(
        (await all('&sender=@A.TEST')).map((m) => m.queueId),
        ids.filter((_, i) => i % 5 !== 0),
      );
      assert.deepEqual(
        (await all('&domain=y.test')).map((m) => m.queueId),
        ids.filter((_, i) => i % 2 === 0),
      );
      assert.deepEqual(
        (await all('&olderThan=86400')).map((m) => m.queueId),
        ids.slice(0, 5),
      );
      assert.deepEqual(
        (await all('&newerThan=86400&domain=y.test&sender=bob@b.test')).map((m) => m.queueId),
        [ids[10], ids[20]],
      );
      assert.deepEqual(await all('&state=active'), []);
      const bad = await fetch(`${url}/queue?state=frozen`, {
        headers: { authorization: 'Bearer list-token' },
      });
      assert.equal(bad.status, 400);

      const stdout = new PassThrough();
      let text = '';
      stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      const code = await runQueueCli(['list', '--sender', 'bob@b.test', '--page-size', '2'], {
        stdout,
        stderr: new PassThrough(),
        url,
        token: 'list-token',
      });
      assert.equal(code, 0);
      assert.match(text, /-- \d+ Kbytes in 5 requests\.\n$/);
      for (const [i, id] of ids.entries()) assert.equal(text.includes(id), i % 5 === 0, id);
    } finally {
      await started.close();
    }
  });
});
