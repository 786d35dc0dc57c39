// Restarts, crashes and shutdown of the delivery manager, on a real spool on disk with a
// fake in-process transport (see testing/queue-kit.ts; real SMTP transports have their own tests).
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
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

describe('DeliveryManager recovery', () => {
  const dir = suiteDir('sluice-recovery-');

  it('resumes from the envelopes on disk after a restart, at the scheduled time', async () => {
    const spoolDir = join(dir(), 'restart');
    const clock = new FakeClock();
    const config = testConfig(dir());
    const first = await bootQueue(spoolDir, new FakeTransport(() => 'deferred'), clock, config);
    await first.manager.start();
    const id = newQueueId(clock.now);
    await first.submit(testEnvelope(id, ['a@slow.test', 'b@slow.test'], clock.now));
    await waitFor('first attempt', () => first.events('retry_scheduled').length === 1);
    assert.deepEqual(await first.manager.stop(1000), [id]);

    clock.advance(100 * SECOND);
    const transport = new FakeTransport();
    const second = await bootQueue(spoolDir, transport, clock, config);
    await second.manager.start();
    await second.manager.scanned;
    assert.equal(second.manager.size, 1);
    assert.equal((await second.manager.get(id))?.attempts, 1);
    await flush();
    assert.deepEqual(transport.jobs, [], 'not before its next attempt');
    clock.advanceTo(T0 + 300 * SECOND);
    await waitFor('delivered after the restart', () => second.manager.size === 0);
    assert.deepEqual(transport.sentTo(), ['a@slow.test', 'b@slow.test']);
    assert.deepEqual(await readdir(second.spool.queueDir), []);
    await second.manager.stop(1000);
  });

  it('never re-sends to a domain already delivered when it crashes between domains', async () => {
    const spoolDir = join(dir(), 'crash');
    const clock = new FakeClock();
    const config = testConfig(dir());
    const doomed = new FakeTransport();
    doomed.hang.add('beta.test');
    const first = await bootQueue(spoolDir, doomed, clock, config);
    await first.manager.start();
    const id = newQueueId(clock.now);
    await first.submit(testEnvelope(id, ['a1@alpha.test', 'a2@alpha.test', 'b@beta.test'], clock.now));
    await waitFor(
      'alpha persisted as delivered',
      async () => (await first.onDisk(id))?.recipients.filter((r) => r.state === 'delivered').length === 2,
    );
    // the crash: beta's connection never answers and the process goes away
    assert.deepEqual(await first.manager.stop(20), [id]);

    const transport = new FakeTransport();
    const second = await bootQueue(spoolDir, transport, clock, config);
    await second.manager.start();
    await waitFor('the rest delivered after the restart', () => second.manager.size === 0);
    assert.deepEqual(
      transport.jobs.map((j) => [j.domain, j.recipients]),
      [['beta.test', ['b@beta.test']]],
    );
    await second.manager.stop(1000);
  });

  it('queues the bounce notice that a crash cut off, once', async () => {
    const spoolDir = join(dir(), 'lost-dsn');
    const clock = new FakeClock();
    const config = testConfig(dir());
    const id = newQueueId(clock.now);
    const envelope = testEnvelope(id, ['gone@alpha.test', 'later@beta.test'], clock.now);
    // on disk as a crash left it: one recipient bounced, its notice never queued
    envelope.recipients[0] = {
      address: 'gone@alpha.test',
      state: 'bounced',
      response: '550 5.1.1 no such user',
      status: '5.1.1',
      attempts: 1,
    };
    const transport = new FakeTransport();
    const q = await bootQueue(spoolDir, transport, clock, config);
    await q.submit(envelope);
    await q.manager.start();
    await waitFor('the rest delivered', () => q.manager.size === 0);
    assert.deepEqual(
      q.dsn.map((d) => [d.action, d.recipients.map((r) => r.address)]),
      [['failed', ['gone@alpha.test']]],
    );
    assert.deepEqual(transport.sentTo(), ['later@beta.test'], 'the bounced recipient is not sent to');
    await q.manager.stop(1000);
  });

  it('delivers to a recipient in no known state instead of counting it bounced unseen', async () => {
    const clock = new FakeClock();
    const transport = new FakeTransport();
    const q = await bootQueue(join(dir(), 'unknown-state'), transport, clock, testConfig(dir()));
    const id = newQueueId(clock.now);
    const envelope = testEnvelope(id, ['done@one.test', 'odd@one.test'], clock.now);
    envelope.recipients[0] = { address: 'done@one.test', state: 'delivered' };
    envelope.recipients[1] = { address: 'odd@one.test', state: 'sending' as 'pending' };
    await q.submit(envelope);
    await q.manager.start();
    await waitFor('the message left the queue', () => q.manager.size === 0);
    assert.deepEqual(transport.sentTo(), ['odd@one.test']);
    const [done] = q.events('message_done');
    assert.deepEqual([done?.delivered, done?.bounced], [2, 0]);
    await q.manager.stop(1000);
  });

  it('delivers a message whose state file is damaged to every recipient not known to be done', async () => {
    const spoolDir = join(dir(), 'damaged-state');
    const clock = new FakeClock();
    const config = testConfig(dir());
    const first = await bootQueue(
      spoolDir,
      new FakeTransport((a) => (a.startsWith('a') ? 'delivered' : 'deferred')),
      clock,
      config,
    );
    await first.manager.start();
    const id = newQueueId(clock.now);
    await first.submit(testEnvelope(id, ['a@one.test', 'b@two.test'], clock.now));
    await waitFor('first attempt', () => first.events('retry_scheduled').length === 1);
    await first.manager.stop(1000);
    await first.spool.close();
    // the envelope beside the message (a delivered, b deferred) is damaged while the relay is down
    await writeFile(join(first.spool.queueDir, `${id}.json`), '\0\0\0garbage');

    const transport = new FakeTransport();
    const second = await bootQueue(spoolDir, transport, clock, config);
    await second.manager.start();
    await waitFor('delivered after the restart', () => second.manager.size === 0);
    // b is what mattered; a gets the message twice (at least once beats lost)
    assert.deepEqual(transport.sentTo().sort(), ['a@one.test', 'b@two.test']);
    assert.deepEqual(
      second.events('queue_recovered').map((l) => [l.queueId, l.reason]),
      [[id, 'damaged_state_file']],
    );
    assert.deepEqual(await readdir(join(spoolDir, 'corrupt')), [`${id}.json`]);
    await second.manager.stop(1000);
  });

  it('starts over queue entries it cannot read and delivers the rest', async () => {
    const spoolDir = join(dir(), 'unreadable');
    const clock = new FakeClock();
    const transport = new FakeTransport();
    const q = await bootQueue(spoolDir, transport, clock, testConfig(dir()));
    const id = newQueueId(clock.now);
    await q.submit(testEnvelope(id, ['a@one.test'], clock.now));
    await mkdir(join(q.spool.queueDir, `${newQueueId(clock.now)}.msg`));
    await writeFile(join(q.spool.queueDir, 'core.1234'), 'junk');
    await q.manager.start();
    await waitFor('the readable message delivered', () => q.manager.size === 0);
    assert.deepEqual(transport.sentTo(), ['a@one.test']);
    assert.deepEqual(
      q
        .events('queue_corrupt')
        .map((l) => l.reason)
        .sort(),
      ['unknown_entry', 'unreadable'],
    );
    await q.manager.stop(1000);
  });

  it('stop(deadline) waits for attempts in flight up to the deadline and returns what is still queued', async () => {
    const clock = new FakeClock();
    const transport = new FakeTransport(() => 'deferred');
    transport.hang.add('hang.test');
    const q = await bootQueue(join(dir(), 'stop'), transport, clock, testConfig(dir()));
    await q.manager.start();
    const hung = newQueueId(clock.now);
    const deferred = newQueueId(clock.now + 1);
    await q.submit(testEnvelope(hung, ['a@hang.test'], clock.now));
    await q.submit(testEnvelope(deferred, ['b@later.test'], clock.now));
    await waitFor(
      'both attempted',
      () => q.events('retry_scheduled').length === 1 && transport.inFlight === 1,
    );
    assert.deepEqual(await q.manager.stop(30), [hung, deferred].sort());

    // stopped: no retries, no new messages, no admin retries
    clock.advance(3600 * SECOND);
    const late = newQueueId(clock.now);
    await q.submit(testEnvelope(late, ['c@later.test'], clock.now));
    assert.equal(q.manager.retryNow(), false);
    await flush();
    assert.equal(transport.jobs.length, 2);
    assert.equal(await q.manager.get(late), undefined);
    assert.deepEqual(
      await q.spool.list(),
      [hung, deferred, late].sort(),
      'everything stays on disk for the next run',
    );
  });

  it('does not start jobs still waiting for a connection when it stops', async () => {
    const clock = new FakeClock();
    const transport = new FakeTransport();
    const open = transport.hold();
    const q = await bootQueue(
      join(dir(), 'stop-waiting'),
      transport,
      clock,
      testConfig(dir(), { maxConnections: 1 }),
    );
    const ids = [newQueueId(clock.now), newQueueId(clock.now + 1)];
    await q.submit(testEnvelope(ids[0]!, ['a@one.test'], clock.now));
    await q.submit(testEnvelope(ids[1]!, ['b@two.test'], clock.now));
    await q.manager.start();
    await waitFor('one connection open', () => transport.inFlight === 1);
    // either may take the one connection: both are made active at once, and the one whose
    // envelope is read from disk first asks for it first
    const started = transport.jobs[0]!.queueId;
    const other = ids.find((id) => id !== started)!;
    const stopped = q.manager.stop(5000);
    open();
    assert.deepEqual(await stopped, [other]);
    assert.equal(transport.jobs.length, 1);
    assert.equal(await q.onDisk(started), undefined, 'the attempt in flight finished and delivered');
    const waiting = await q.onDisk(other);
    assert.equal(waiting?.recipients[0]?.state, 'pending');
    assert.equal(waiting?.attempts, undefined, 'an attempt that never ran does not count');
  });
});
