// Hold and release (Postfix's postsuper -h / -H) and the bulk actions, as an admin sees
// them: the admin API's answers and the queue CLI's output against a real relay that
// delivers to a real SMTP sink, across a restart on the same spool.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { runQueueCli } from '../cli/queue.ts';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  type SmtpSink,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
  waitFor,
} from '../testing/index.ts';
import { scrapeMetrics } from '../testing/metrics-scrape.ts';
import type { QueueListResponse } from './queue-api.ts';

const TOKEN = 'hold-test-token';
const QUEUED = /^Ok: queued as (\S+)$/;

async function startRelay(sink: SmtpSink, dir: string): Promise<TestRelay> {
  return startTestRelay({
    deliver: true,
    config: {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      spoolDir: join(dir, 'spool'),
      admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
      delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
    },
  });
}

/** Sends one message; its queue id. */
async function send(relay: TestRelay, from: string, to: string, subject: string): Promise<string> {
  const client = await RawSmtpClient.connect(relay.port('plain'));
  await client.greeting();
  await client.ehlo();
  await client.authPlain('alice', PASSWORD);
  const replies = await client.sendRaw(from, [to], `Subject: ${subject}\r\n\r\n${subject}\r\n`);
  await client.quit();
  const last = replies.at(-1);
  assert.equal(last?.code, 250, JSON.stringify(replies));
  const id = QUEUED.exec(last.text.replace(/^2\.0\.0 /, ''))?.[1];
  assert.ok(id, last.text);
  return id;
}

function api(relay: TestRelay) {
  return async (method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await fetch(`http://127.0.0.1:${relay.relay.adminPort}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
}

async function cli(
  relay: TestRelay,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  stderr.on('data', (c: Buffer) => {
    err += c.toString('utf8');
  });
  const code = await runQueueCli(args, {
    stdout,
    stderr,
    url: `http://127.0.0.1:${relay.relay.adminPort}`,
    token: TOKEN,
  });
  return { code, stdout: out, stderr: err };
}

/** Waits until the relay logged a deferred attempt of each message. */
async function deferred(relay: TestRelay, ids: string[]): Promise<void> {
  await waitFor(`a deferred attempt of ${ids.join(', ')}`, () =>
    ids.every((id) =>
      relay.logs
        .events('delivery_attempt')
        .some((l) => l.queueId === id && Number((l.results as { deferred?: number }).deferred) > 0),
    ),
  );
}

const atSink = (sink: SmtpSink, subject: string) =>
  sink.messages.filter((m) => m.raw.toString('utf8').includes(`Subject: ${subject}\r\n`));

describe('queue hold and release', () => {
  let sink: SmtpSink;
  let dir: string;

  before(async () => {
    sink = await startSmtpSink();
    dir = await mkdtemp(join(tmpdir(), 'sluice-hold-'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'token'), TOKEN);
  });
  after(async () => {
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a held message is never attempted, stays held across a restart, and is delivered once released', async (t) => {
    sink.setRecipientReply('bob@one.test', { code: 451, text: '4.3.0 try again later' });
    let relay = await startRelay(sink, dir);
    const running = new Set([relay]);
    t.after(() => Promise.all([...running].map((r) => r.close())));
    let call = api(relay);
    const id = await send(relay, 'alice@sender.test', 'bob@one.test', 'held one');
    await deferred(relay, [id]);

    assert.deepEqual(await call('POST', `/queue/${id}/hold`), {
      status: 200,
      body: { queueId: id, state: 'held' },
    });
    const listed = (await call('GET', '/queue?state=held')).body as unknown as QueueListResponse;
    assert.deepEqual(
      listed.messages.map((m) => [m.queueId, m.state]),
      [[id, 'held']],
    );
    assert.equal(listed.total, 1);
    const metrics = await scrapeMetrics(relay.relay.adminPort);
    assert.equal(metrics.value('sluice_queue_held_messages'), 1);
    assert.equal(metrics.value('sluice_queue_messages'), 0, 'held mail is not mail being delivered');
    // the destination takes mail again; a flush leaves held mail be, and a retry is refused
    sink.setRecipientReply('bob@one.test', undefined);
    assert.deepEqual(await call('POST', '/queue/retry'), { status: 202, body: { scheduled: 0 } });
    assert.deepEqual(await call('POST', `/queue/${id}/retry`), {
      status: 409,
      body: { error: 'the message is on hold: release it first', queueId: id },
    });
    const shown = await cli(relay, ['list']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^${id}! +\\d+ .* alice@sender\\.test$`, 'm'));
    running.delete(relay);
    await relay.close();

    // a restart on the same spool: still held, and not attempted
    relay = await startRelay(sink, dir);
    running.add(relay);
    call = api(relay);
    await waitFor('the queue scan', () => relay.logs.events('queue_loaded').length === 1);
    const after = (await call('GET', `/queue/${id}`)).body;
    assert.equal(after.state, 'held');
    assert.equal(after.queueId, id);
    assert.deepEqual(await call('POST', '/queue/retry'), { status: 202, body: { scheduled: 0 } });
    // a message sent after the restart is delivered; the held one is not
    const later = await send(relay, 'alice@sender.test', 'carol@one.test', 'sent later');
    await waitFor('the later message at the sink', () => atSink(sink, 'sent later').length === 1);
    assert.equal(atSink(sink, 'held one').length, 0, 'the held message is not delivered');
    assert.equal(
      relay.logs.events('delivery_attempt').filter((l) => l.queueId === id).length,
      0,
      'nor attempted',
    );
    assert.ok(later);

    const released = await cli(relay, ['release', id.toLowerCase()]);
    assert.deepEqual(released, { code: 0, stdout: `${id}: released from hold\n`, stderr: '' });
    await waitFor('the released message at the sink', () => atSink(sink, 'held one').length === 1);
    await waitFor('an empty queue', async () => (await call('GET', '/queue')).body.total === 0);
    assert.equal((await scrapeMetrics(relay.relay.adminPort)).value('sluice_queue_held_messages'), 0);
    assert.deepEqual(await call('POST', `/queue/${id}/release`), {
      status: 404,
      body: { error: 'not found', queueId: id },
    });
    assert.deepEqual(await readdir(join(dir, 'spool', 'hold')), []);
  });

  it('holds, releases, flushes and deletes by domain, sender and age, and says how many', async (t) => {
    for (const address of ['x@a.test', 'y@a.test', 'z@b.test'])
      sink.setRecipientReply(address, { code: 451, text: '4.3.0 try again later' });
    const relay = await startRelay(sink, dir);
    t.after(() => relay.close());
    const call = api(relay);
    const ids = [
      await send(relay, 'alice@sender.test', 'x@a.test', 'bulk 1'),
      await send(relay, 'alice@sender.test', 'y@a.test', 'bulk 2'),
      await send(relay, 'news@other.test', 'z@b.test', 'bulk 3'),
    ];
    await deferred(relay, ids);

    assert.deepEqual(await cli(relay, ['hold', '--domain', 'a.test']), {
      code: 0,
      stdout: 'Held 2 messages.\n',
      stderr: '',
    });
    assert.deepEqual(await call('POST', '/queue/hold?domain=a.test'), { status: 200, body: { held: 0 } });
    assert.deepEqual(await call('POST', '/queue/hold?olderThan=3600'), { status: 200, body: { held: 0 } });
    assert.deepEqual(await call('POST', '/queue/hold'), {
      status: 400,
      body: { error: 'hold of the whole queue wants all=true (or a filter)' },
    });
    const states = (await call('GET', '/queue')).body as unknown as QueueListResponse;
    assert.deepEqual(
      states.messages.map((m) => m.state),
      ['held', 'held', 'deferred'],
    );

    // the sender's and the age filters select among them
    assert.deepEqual(await cli(relay, ['release', '--sender', '@sender.test', '--older-than', '0']), {
      code: 0,
      stdout: 'Released 2 messages.\n',
      stderr: '',
    });
    // released means due now: the deferrals come back (the sink still says 451)
    await waitFor('a second attempt of both released messages', async () => {
      const page = (await call('GET', '/queue?domain=a.test')).body as unknown as QueueListResponse;
      const again = (id: string) =>
        relay.logs.events('delivery_attempt').filter((l) => l.queueId === id).length === 2;
      return page.messages.every((m) => m.state === 'deferred') && ids.slice(0, 2).every(again);
    });
    for (const address of ['x@a.test', 'y@a.test']) sink.setRecipientReply(address, undefined);
    assert.deepEqual(await cli(relay, ['flush', '--domain', 'a.test']), {
      code: 0,
      stdout: 'Scheduled 2 messages for immediate delivery.\n',
      stderr: '',
    });
    await waitFor(
      'both at the sink',
      () => atSink(sink, 'bulk 1').length + atSink(sink, 'bulk 2').length === 2,
    );

    assert.deepEqual(await cli(relay, ['hold', '--all']), {
      code: 0,
      stdout: 'Held 1 message.\n',
      stderr: '',
    });
    assert.deepEqual(await cli(relay, ['delete', '--sender', 'news@other.test']), {
      code: 0,
      stdout: 'Deleted 1 message.\n',
      stderr: '',
    });
    assert.deepEqual(await cli(relay, ['list']), { code: 0, stdout: 'Mail queue is empty\n', stderr: '' });
    assert.equal(atSink(sink, 'bulk 3').length, 0);
  });

  it('puts a message back together when a crash cut its hold or release in two', async (t) => {
    sink.setRecipientReply('dora@one.test', { code: 451, text: '4.3.0 try again later' });
    let relay = await startRelay(sink, dir);
    const running = new Set([relay]);
    t.after(() => Promise.all([...running].map((r) => r.close())));
    const id = await send(relay, 'alice@sender.test', 'dora@one.test', 'cut in two');
    await deferred(relay, [id]);
    assert.equal((await api(relay)('POST', `/queue/${id}/hold`)).status, 200);
    running.delete(relay);
    await relay.close();
    const queueDir = join(dir, 'spool', 'queue');
    const holdDir = join(dir, 'spool', 'hold');

    // a hold cut short: the message file moved, the envelope with the attempt's state not
    await rename(join(holdDir, `${id}.json`), join(queueDir, `${id}.json`));
    relay = await startRelay(sink, dir);
    running.add(relay);
    await waitFor('the queue scan', () => relay.logs.events('queue_loaded').length === 1);
    const held = (await api(relay)('GET', `/queue/${id}`)).body;
    assert.equal(held.state, 'held');
    assert.equal(held.attempts, 1, 'the state of the attempt is kept');
    assert.deepEqual((await readdir(holdDir)).sort(), [`${id}.json`, `${id}.msg`]);
    running.delete(relay);
    await relay.close();

    // a release cut short: the message file back in the queue, the envelope still held
    await rename(join(holdDir, `${id}.msg`), join(queueDir, `${id}.msg`));
    sink.setRecipientReply('dora@one.test', undefined);
    relay = await startRelay(sink, dir);
    running.add(relay);
    await waitFor('the released message at the sink', () => atSink(sink, 'cut in two').length === 1);
    assert.deepEqual(await readdir(holdDir), []);
    assert.equal(
      relay.logs.events('delivery_attempt').find((l) => l.queueId === id)?.attempt,
      2,
      'delivered as the second attempt: the envelope came back with it',
    );
  });
});
