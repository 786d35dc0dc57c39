// The delivery manager against a real spool on disk and a fake in-process transport (see
// testing/queue-kit.ts; the real SMTP transports have their own tests against real SMTP peers).
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { DeliveryJob, RecipientOutcome } from '../delivery/types.ts';
import { newQueueId } from '../spool/queue-id.ts';
import {
  bootQueue,
  FakeClock,
  FakeTransport,
  flush,
  T0,
  testConfig,
  testEnvelope,
} from '../testing/queue-kit.ts';
import { suiteDir } from '../testing/spools.ts';
import { waitFor } from '../testing/wait-for.ts';

const SECOND = 1000;

describe('DeliveryManager', () => {
  const dir = suiteDir('sluice-delivery-');

  it('sends per domain, records each recipient, bounces once and retries only the deferred ones on time', async () => {
    const answers: Record<string, RecipientOutcome> = {
      'b2@beta.test': 'bounced',
      'c1@gamma.test': 'deferred',
      'c2@gamma.test': 'deferred',
    };
    const transport = new FakeTransport((address) => answers[address] ?? 'delivered');
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'mixed'), transport, clock, testConfig(dir()));
    await q.manager.start();
    const id = newQueueId(clock.now);
    const recipients = ['a1@alpha.test', 'a2@Alpha.Test', 'a3@alpha.test', 'b1@beta.test', 'b2@beta.test'];
    await q.submit(testEnvelope(id, [...recipients, 'c1@gamma.test', 'c2@gamma.test'], clock.now));
    await waitFor('first attempt finished', () => q.events('retry_scheduled').length === 1);

    assert.deepEqual(transport.jobs.map((j) => [j.domain, j.recipients.length]).sort(), [
      ['alpha.test', 3],
      ['beta.test', 2],
      ['gamma.test', 2],
    ]);
    const stored = await q.onDisk(id);
    const states = Object.fromEntries(stored!.recipients.map((r) => [r.address, r.state]));
    assert.deepEqual(states, {
      'a1@alpha.test': 'delivered',
      'a2@Alpha.Test': 'delivered',
      'a3@alpha.test': 'delivered',
      'b1@beta.test': 'delivered',
      'b2@beta.test': 'bounced',
      'c1@gamma.test': 'deferred',
      'c2@gamma.test': 'deferred',
    });
    assert.equal(
      stored!.recipients.find((r) => r.address === 'b2@beta.test')?.response,
      '550 5.1.1 no such user',
    );
    assert.equal(stored!.attempts, 1);
    assert.equal(stored!.nextAttemptAt, new Date(T0 + 300 * SECOND).toISOString());
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address), d.bodyPath]),
      [['failed', ['b2@beta.test'], q.queue.bodyPath(id)]],
    );
    assert.deepEqual(
      q
        .events('delivery_attempt')
        .map((l) => [l.domain, l.remoteHost, l.reason])
        .sort(),
      [
        ['alpha.test', 'mx.alpha.test', undefined],
        ['beta.test', 'mx.beta.test', undefined],
        ['gamma.test', 'mx.gamma.test', 'fake_deferral'],
      ],
      'one line per attempt, with where it went and why it failed',
    );
    assert.equal(q.events('delivered').length, 4);
    assert.deepEqual(
      q.events('bounced').map((l) => [l.queueId, l.recipient, l.response]),
      [[id, 'b2@beta.test', '550 5.1.1 no such user']],
    );
    assert.ok(
      q.logs
        .filter((l) => typeof l.event === 'string' && l.event !== 'queue_loaded')
        .every((l) => l.queueId === id),
    );
    assert.deepEqual([...q.metrics.attempts].sort(), [
      'bounced',
      'deferred',
      'deferred',
      'delivered',
      'delivered',
      'delivered',
      'delivered',
    ]);
    assert.equal(q.metrics.retries, 1);

    // nothing before the scheduled time, the retry right at it, only to the deferred ones
    clock.advance(300 * SECOND - 1);
    await flush();
    assert.equal(transport.jobs.length, 3);
    answers['c1@gamma.test'] = 'delivered';
    clock.advance(1);
    await waitFor('second attempt finished', () => q.events('retry_scheduled').length === 2);
    assert.deepEqual(transport.jobs[3]?.recipients, ['c1@gamma.test', 'c2@gamma.test']);
    assert.equal((await q.onDisk(id))?.nextAttemptAt, new Date(clock.now + 600 * SECOND).toISOString());

    answers['c2@gamma.test'] = 'delivered';
    clock.advance(600 * SECOND);
    await waitFor('message done', () => q.manager.size === 0 && q.events('message_done').length === 1);
    assert.deepEqual(transport.jobs[4]?.recipients, ['c2@gamma.test']);
    assert.equal(transport.sentTo().filter((a) => a.startsWith('a1@')).length, 1, 'never sent twice');
    assert.deepEqual(await readdir(q.spool.queueDir), []);
    assert.equal(q.dsn.length, 1, 'no further DSN');

    // the delivered message's files wait in trash/ to be reused for new messages; those of
    // a message removed through the API are deleted (a reader may still have them open)
    const removed = newQueueId(clock.now + 1);
    answers['r@hold.test'] = 'deferred';
    await q.submit(testEnvelope(removed, ['r@hold.test'], clock.now));
    await waitFor('its first attempt', () => q.events('retry_scheduled').length === 3);
    assert.equal(await q.manager.remove(removed), true);
    await waitFor('the removed message deleted from trash/', async () =>
      (await readdir(q.spool.trashDir)).every((name) => !name.startsWith(removed)),
    );
    assert.deepEqual((await readdir(q.spool.trashDir)).sort(), [`${id}.json`, `${id}.msg`]);
    await q.manager.stop(1000);
  });

  it('keeps to maxConnections and maxConnectionsPerDomain', async () => {
    const transport = new FakeTransport();
    const open = transport.hold();
    const clock = new FakeClock();
    const config = testConfig(dir(), { maxConnections: 3, maxConnectionsPerDomain: 2 });
    const q = await bootQueue(join(dir(), 'limits'), transport, clock, config);
    // queued before start: the scan makes all of them due at once
    for (let i = 0; i < 8; i++) {
      await q.submit(
        testEnvelope(newQueueId(clock.now + i), [`u${i}@${i < 5 ? 'busy' : 'other'}.test`], clock.now),
      );
    }
    await q.manager.start();
    await waitFor('three connections open', () => transport.inFlight === 3);
    await flush();
    assert.equal(transport.inFlight, 3);
    assert.equal(transport.maxPerDomain.get('busy.test'), 2);
    open();
    await waitFor('all delivered', () => q.manager.size === 0);
    assert.equal(transport.jobs.length, 8);
    assert.equal(transport.maxInFlight, 3);
    assert.equal(transport.maxPerDomain.get('busy.test'), 2);
    await q.manager.stop(1000);
  });

  it('keeps to maxConnectionsPerDomain for the smarthost, whatever the recipient domains', async () => {
    const transport = new FakeTransport();
    const open = transport.hold();
    const clock = new FakeClock();
    const config = testConfig(dir(), {
      mode: 'smarthost',
      smarthost: { host: '127.0.0.1', port: 2525, tls: 'none', rejectUnauthorized: true },
      maxConnections: 5,
      maxConnectionsPerDomain: 2,
    });
    const q = await bootQueue(join(dir(), 'smarthost-limits'), transport, clock, config);
    for (let i = 0; i < 6; i++)
      await q.submit(testEnvelope(newQueueId(clock.now + i), [`u${i}@domain${i}.test`], clock.now));
    await q.manager.start();
    await waitFor('two connections open', () => transport.inFlight >= 2);
    await flush();
    assert.equal(transport.inFlight, 2, 'six domains, one smarthost: two at once');
    open();
    await waitFor('all delivered', () => q.manager.size === 0);
    assert.equal(transport.jobs.length, 6);
    assert.equal(transport.maxInFlight, 2);
    await q.manager.stop(1000);
  });

  it("gives a just-received message's first attempt its bytes from memory, within heldBodyBytes; later attempts read the file", async () => {
    const transport = new FakeTransport((address) =>
      address.startsWith('later@') ? 'deferred' : 'delivered',
    );
    const open = transport.hold();
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'held'), transport, clock, testConfig(dir()), {
      heldBodyBytes: 40,
    });
    await q.manager.start();
    const receive = async (id: string, recipient: string, chunks: string[]) => {
      const writer = q.spool.createWriter(id);
      for (const chunk of chunks) writer.write(chunk);
      writer.end();
      await writer.commit(testEnvelope(id, [recipient], clock.now));
    };
    const bytes = (job: DeliveryJob | undefined) =>
      job?.body && Buffer.concat(job.body.map((b) => Buffer.from(b))).toString('latin1');
    const jobsOf = (id: string) => transport.jobs.filter((j) => j.queueId === id);
    const [first, second, third] = [0, 1, 2].map((i) => newQueueId(clock.now + i)) as [
      string,
      string,
      string,
    ];
    // 28 bytes held; the second's 29 would make 57, over the 40 allowed while the first is in flight
    await receive(first, 'later@a.test', ['Subject: one\r\n', '\r\n', 'first body\r\n']);
    await receive(second, 'now@b.test', ['Subject: two\r\n\r\nsecond body\r\n']);
    await waitFor('both attempts under way', () => transport.inFlight === 2);
    assert.equal(bytes(jobsOf(first)[0]), 'Subject: one\r\n\r\nfirst body\r\n');
    const onDisk = (await readFile(q.queue.bodyPath(first))).subarray(0, jobsOf(first)[0]?.size);
    assert.equal(onDisk.toString('latin1'), bytes(jobsOf(first)[0]), 'the bytes the file holds');
    assert.equal(jobsOf(second)[0]?.body, undefined, 'over the allowance: its attempt reads the file');
    open();
    await waitFor(
      'first attempts done',
      () => q.events('retry_scheduled').length === 1 && q.events('message_done').length === 1,
    );
    await flush(); // the attempts' last continuations, which give back what they held
    // what the finished attempts held is given back: a new message's bytes are kept again
    await receive(third, 'now@c.test', ['Subject: three\r\n\r\nthird\r\n']);
    await waitFor('third delivered', () => jobsOf(third).length === 1 && q.manager.size === 1);
    assert.equal(bytes(jobsOf(third)[0]), 'Subject: three\r\n\r\nthird\r\n');
    // the retry of the deferred one reads its file
    clock.advance(300 * SECOND);
    await waitFor('retried', () => jobsOf(first).length === 2);
    assert.equal(jobsOf(first)[1]?.body, undefined);
    await q.manager.stop(1000);
  });

  it('treats a transport that throws as deferred 4.0.0 for the whole job', async () => {
    const transport = new FakeTransport();
    transport.fail.add('broken.test');
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'throws'), transport, clock, testConfig(dir()));
    await q.manager.start();
    const id = newQueueId(clock.now);
    await q.submit(testEnvelope(id, ['a@broken.test', 'b@fine.test'], clock.now));
    await waitFor('attempt finished', () => q.events('retry_scheduled').length === 1);
    const [a, b] = (await q.onDisk(id))!.recipients;
    assert.equal(a?.state, 'deferred');
    assert.equal(a?.status, '4.0.0');
    assert.match(a?.response ?? '', /connection pool exploded/);
    assert.equal(b?.state, 'delivered');
    assert.deepEqual(q.dsn, []);
    await q.manager.stop(1000);
  });

  it('bounces with 5.4.7 at the end of the queue lifetime, on time', async () => {
    const transport = new FakeTransport(() => 'deferred');
    const clock = new FakeClock();
    const config = testConfig(dir(), {}, { queueLifetimeSeconds: 3600, delayWarningSeconds: 0 });
    const q = await bootQueue(join(dir(), 'expiry'), transport, clock, config);
    await q.manager.start();
    const id = newQueueId(clock.now);
    await q.submit(testEnvelope(id, ['a@slow.test'], clock.now));
    // attempts at 0, 300, 900, 2100 s; the next would be 4500 s but the lifetime ends at 3600 s
    for (const [n, at] of [
      [1, 0],
      [2, 300],
      [3, 900],
      [4, 2100],
    ] as const) {
      clock.advanceTo(T0 + at * SECOND);
      await waitFor(`attempt ${n}`, () => q.events('retry_scheduled').length === n);
    }
    assert.equal((await q.onDisk(id))?.nextAttemptAt, new Date(T0 + 3600 * SECOND).toISOString());
    clock.advanceTo(T0 + 3600 * SECOND);
    await waitFor('message bounced and removed', () => q.manager.size === 0);
    assert.equal(transport.jobs.length, 5);
    assert.equal(q.dsn.length, 1);
    assert.equal(q.dsn[0]?.action, 'failed');
    assert.equal(q.dsn[0]?.recipients[0]?.status, '5.4.7');
    assert.equal(q.dsn[0]?.recipients[0]?.response, 'delivery time expired: 451 4.3.0 try again later');
    assert.deepEqual(await readdir(q.spool.queueDir), []);
    await q.manager.stop(1000);
  });

  it('asks for one delay notice, once delayWarningSeconds have passed', async () => {
    const transport = new FakeTransport((address) => (address.startsWith('ok') ? 'delivered' : 'deferred'));
    const clock = new FakeClock();
    const q = await bootQueue(
      join(dir(), 'delay'),
      transport,
      clock,
      testConfig(dir(), {}, { delayWarningSeconds: 600 }),
    );
    await q.manager.start();
    const id = newQueueId(clock.now);
    await q.submit(testEnvelope(id, ['ok@fine.test', 'late@slow.test'], clock.now));
    await waitFor('attempt 1', () => q.events('retry_scheduled').length === 1);
    clock.advance(300 * SECOND);
    await waitFor('attempt 2', () => q.events('retry_scheduled').length === 2);
    assert.equal(q.dsn.length, 0, 'not before 600 s');
    clock.advance(600 * SECOND);
    await waitFor('attempt 3', () => q.events('retry_scheduled').length === 3);
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address)]),
      [['delayed', ['late@slow.test']]],
    );
    assert.equal((await q.onDisk(id))?.delayWarned, true);
    clock.advance(1200 * SECOND);
    await waitFor('attempt 4', () => q.events('retry_scheduled').length === 4);
    assert.equal(q.dsn.length, 1, 'only once');
    assert.deepEqual(q.metrics.notices, ['delayed']);
    await q.manager.stop(1000);
  });

  it('keeps a bounced message until its notice is written, without sending it again', async () => {
    const transport = new FakeTransport(() => 'bounced');
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'notice-owed'), transport, clock, testConfig(dir()));
    q.dsnFailures.left = 2;
    await q.manager.start();
    const id = newQueueId(clock.now);
    await q.submit(testEnvelope(id, ['gone@x.test'], clock.now));
    await waitFor('attempt 1', () => q.events('retry_scheduled').length === 1);
    assert.equal(q.events('dsn_failed').length, 1);
    const kept = await q.onDisk(id);
    assert.deepEqual(
      kept?.recipients.map((r) => [r.address, r.state, r.notified ?? false]),
      [['gone@x.test', 'bounced', false]],
    );
    // the retry only asks for the notice again: still failing, then written
    clock.advance(300 * SECOND);
    await waitFor('attempt 2', () => q.events('retry_scheduled').length === 2);
    clock.advance(900 * SECOND);
    await waitFor('the message leaves once its notice is queued', () => q.manager.size === 0);
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address)]),
      [['failed', ['gone@x.test']]],
    );
    assert.equal(transport.jobs.length, 1, 'the bounced recipient is not sent to again');
    assert.equal(await q.onDisk(id), undefined);
    await q.manager.stop(1000);
  });

  it("follows each recipient's NOTIFY: no bounce notice for NEVER, a relay notice for SUCCESS", async () => {
    const transport = new FakeTransport((address) => (address.startsWith('gone') ? 'bounced' : 'delivered'));
    transport.offersDsn.add('dsn.test');
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'notify'), transport, clock, testConfig(dir()));
    await q.manager.start();
    const id = newQueueId(clock.now);
    const envelope = testEnvelope(id, [], clock.now, { envid: 'E1' });
    envelope.recipients = [
      { address: 'gone-never@x.test', state: 'pending', notify: ['NEVER'] },
      { address: 'gone@x.test', state: 'pending' },
      { address: 'ok-success@x.test', state: 'pending', notify: ['SUCCESS'] },
      { address: 'ok-success@dsn.test', state: 'pending', notify: ['SUCCESS', 'FAILURE'] },
      { address: 'ok@x.test', state: 'pending' },
    ];
    await q.submit(envelope);
    await waitFor('the message leaves the queue', () => q.manager.size === 0);
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address)]),
      [
        ['failed', ['gone@x.test']],
        // dsn.test took the request with the message: success is its to report
        ['relayed', ['ok-success@x.test']],
      ],
    );
    assert.deepEqual(q.metrics.notices, ['failed', 'relayed']);
    // the DSN request went with the job
    const job = transport.jobs.find((j) => j.domain === 'dsn.test');
    assert.deepEqual(job?.dsn, {
      envid: 'E1',
      recipients: { 'ok-success@dsn.test': { notify: ['SUCCESS', 'FAILURE'] } },
    });
    await q.manager.stop(1000);
  });

  it('sends a delay notice only to recipients whose NOTIFY asks for delays', async () => {
    const transport = new FakeTransport(() => 'deferred');
    const clock = new FakeClock();
    const config = testConfig(dir(), {}, { delayWarningSeconds: 60 });
    const q = await bootQueue(join(dir(), 'notify-delay'), transport, clock, config);
    await q.manager.start();
    const id = newQueueId(clock.now);
    const envelope = testEnvelope(id, [], clock.now);
    envelope.recipients = [
      { address: 'a@slow.test', state: 'pending', notify: ['FAILURE'] },
      { address: 'b@slow.test', state: 'pending', notify: ['DELAY', 'FAILURE'] },
      { address: 'c@slow.test', state: 'pending' },
    ];
    await q.submit(envelope);
    await waitFor('attempt 1', () => q.events('retry_scheduled').length === 1);
    clock.advance(300 * SECOND);
    await waitFor('attempt 2', () => q.events('retry_scheduled').length === 2);
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address)]),
      [['delayed', ['b@slow.test', 'c@slow.test']]],
    );
    await q.manager.stop(1000);
  });

  it('never asks for a DSN about a bounce (null sender) or a DSN', async () => {
    const transport = new FakeTransport((address) => (address.startsWith('gone') ? 'bounced' : 'deferred'));
    const clock = new FakeClock();
    const config = testConfig(dir(), {}, { delayWarningSeconds: 1, queueLifetimeSeconds: 600 });
    const q = await bootQueue(join(dir(), 'no-dsn'), transport, clock, config);
    await q.manager.start();
    const bounce = newQueueId(clock.now);
    const notice = newQueueId(clock.now + 1);
    await q.submit(testEnvelope(bounce, ['gone@x.test', 'late@y.test'], clock.now, { sender: '' }));
    await q.submit(testEnvelope(notice, ['gone@x.test', 'late@y.test'], clock.now, { dsn: true }));
    await waitFor('first attempts', () => q.events('retry_scheduled').length === 2);
    clock.advance(300 * SECOND);
    await waitFor('second attempts, past the delay warning', () => q.events('retry_scheduled').length === 4);
    clock.advance(300 * SECOND);
    await waitFor('both expired', () => q.manager.size === 0);
    assert.equal(q.events('bounced').length, 4);
    assert.deepEqual(q.dsn, []);
    await q.manager.stop(1000);
  });

  it('keeps at most activeLimit messages active, and tries only the messages that are due', async () => {
    const transport = new FakeTransport(() => 'deferred');
    const clock = new FakeClock();
    // (bootQueue scans in one slice: all twenty are found before the first is started)
    const q = await bootQueue(join(dir(), 'active'), transport, clock, testConfig(dir()), {
      activeLimit: 2,
    });
    // twenty queued before start, each to its own domain: the connection limits hold none back
    const ids = Array.from({ length: 20 }, (_, i) => newQueueId(clock.now + i));
    for (const [i, id] of ids.entries()) await q.submit(testEnvelope(id, [`r@d${i}.test`], clock.now));
    const open = transport.hold();
    await q.manager.start();
    await waitFor('two attempts under way', () => transport.inFlight === 2);
    await flush();
    assert.equal(transport.inFlight, 2, 'no more than activeLimit at once');
    assert.equal(q.manager.active, 2);
    open();
    await waitFor('every message tried once', () => q.events('retry_scheduled').length === 20);
    assert.equal(transport.maxInFlight, 2);
    assert.deepEqual(transport.jobs.map((j) => j.queueId).sort(), ids);
    assert.deepEqual(
      transport.jobs
        .slice(0, 2)
        .map((j) => j.queueId)
        .sort(),
      ids.slice(0, 2),
      'oldest first',
    );
    assert.equal(q.manager.active, 0, 'nothing in memory while every message waits');

    // the next attempt of half of them comes due: only those are tried
    await q.manager.remove(ids[0]!);
    clock.advance(299 * SECOND);
    for (const id of ids.slice(1, 10)) q.manager.retryNow(id);
    await waitFor('the nine made due tried again', () => q.events('retry_scheduled').length === 29);
    await flush();
    assert.equal(transport.jobs.length, 29);
    assert.deepEqual(
      transport.jobs
        .slice(20)
        .map((j) => j.queueId)
        .sort(),
      ids.slice(1, 10),
    );
    const page = await q.manager.list({ state: 'deferred', limit: 1000 });
    assert.equal(page.messages.length, 19);
    await q.manager.stop(1000);
  });

  it('retryNow makes a message due at once; remove takes it out of the queue', async () => {
    const transport = new FakeTransport(() => 'deferred');
    const clock = new FakeClock();
    const q = await bootQueue(join(dir(), 'admin'), transport, clock, testConfig(dir()));
    await q.manager.start();
    const first = newQueueId(clock.now);
    const second = newQueueId(clock.now + 1);
    await q.submit(testEnvelope(first, ['a@slow.test'], clock.now));
    clock.advance(SECOND);
    await q.submit(testEnvelope(second, ['b@slow.test'], clock.now));
    await waitFor('first attempts', () => q.events('retry_scheduled').length === 2);
    assert.deepEqual(
      (await q.manager.list()).messages.map((e) => e.queueId),
      [first, second],
    );
    assert.equal(q.manager.oldestReceivedAt(), T0);
    assert.equal((await q.manager.get(first))?.attempts, 1);

    assert.equal(q.manager.retryNow(first), true);
    await waitFor('retried now', () => q.events('retry_scheduled').length === 3);
    assert.deepEqual(transport.jobs.at(-1)?.recipients, ['a@slow.test']);
    assert.equal(q.manager.retryNow('NOSUCHMESSAGE'), false);
    assert.equal(q.manager.retryNow(), true);
    await waitFor('all retried now', () => q.events('retry_scheduled').length === 5);

    assert.equal(await q.manager.remove(first), true);
    assert.equal(await q.manager.remove(first), false);
    assert.equal(await q.manager.get(first), undefined);
    assert.equal(q.manager.size, 1);
    // the other message stays: its file and the envelope written after its deferral
    assert.deepEqual((await readdir(q.spool.queueDir)).sort(), [`${second}.json`, `${second}.msg`]);
    // the removed message's retry time comes and goes without a send
    const sent = transport.jobs.length;
    clock.advance(3600 * SECOND);
    await waitFor('second retried', () => q.events('retry_scheduled').length === 6);
    assert.equal(transport.jobs.length, sent + 1);
    assert.deepEqual(transport.jobs.at(-1)?.recipients, ['b@slow.test']);
    await q.manager.stop(1000);
  });
});
