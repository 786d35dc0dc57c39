import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { newQueueId } from '../spool/queue-id.ts';
import { testEnvelope } from '../testing/queue-kit.ts';
import { suiteDir, testSpool } from '../testing/spools.ts';
import type { QuarantineReason, RecoveryReason } from './damage.ts';
import { QueueStore } from './queue-store.ts';

/** One recipient on a fresh message (the fixture every queue test uses). */
const envelope = (queueId: string): SpooledEnvelope => testEnvelope(queueId, ['b@example.net'], Date.now());

function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { lines, logger };
}

/** What the scan finds, read as delivery reads it when due, oldest first. */
async function scanAll(store: QueueStore): Promise<SpooledEnvelope[]> {
  const found: string[] = [];
  await store.scan((queueId) => void found.push(queueId), { now: Date.now });
  const envelopes: SpooledEnvelope[] = [];
  for (const queueId of found.sort()) {
    const envelope = await store.load(queueId);
    if (envelope) envelopes.push(envelope);
  }
  return envelopes;
}

describe('QueueStore', () => {
  const dir = suiteDir('sluice-queue-store-');

  async function setup(name: string) {
    const spool = testSpool({ dir: join(dir(), name) });
    await spool.init();
    const { lines, logger } = logCapture();
    const counted: { quarantined: QuarantineReason[]; recovered: RecoveryReason[] } = {
      quarantined: [],
      recovered: [],
    };
    const store = new QueueStore({
      spool,
      committer: spool.committer,
      fsync: true,
      logger,
      observer: {
        quarantined: (reason) => void counted.quarantined.push(reason),
        recovered: (reason) => void counted.recovered.push(reason),
      },
    });
    const commit = async (id: string, committed: SpooledEnvelope = envelope(id)) => {
      const writer = spool.createWriter(id);
      writer.end('body');
      await writer.commit(committed);
    };
    return { spool, store, lines, counted, commit };
  }

  it('scans every envelope, oldest first', async () => {
    const { store, commit } = await setup('scan');
    const ids = [newQueueId(2_000), newQueueId(1_000), newQueueId(3_000)];
    for (const id of ids) await commit(id);
    assert.deepEqual(
      (await scanAll(store)).map((e) => e.queueId),
      [...ids].sort(),
    );
  });

  it('replaces an envelope atomically and durably', async () => {
    const { spool, store, commit } = await setup('update');
    const id = newQueueId();
    await commit(id);
    const before = spool.committer.fsyncs;
    await store.update({ ...envelope(id), attempts: 3 }, Date.now());
    assert.equal(JSON.parse(await readFile(join(spool.queueDir, `${id}.json`), 'utf8')).attempts, 3);
    assert.ok(spool.committer.fsyncs > before, 'the rename is made durable');
    // the newer envelope sits beside the message file and wins over the one inside it
    assert.deepEqual((await readdir(spool.queueDir)).sort(), [`${id}.json`, `${id}.msg`]);
    assert.equal((await scanAll(store))[0]?.attempts, 3);
  });

  it('writes concurrent updates of one message in call order', async () => {
    const { spool, store, commit } = await setup('order');
    const id = newQueueId();
    await commit(id);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.update({ ...envelope(id), attempts: i }, Date.now())),
    );
    assert.equal(JSON.parse(await readFile(join(spool.queueDir, `${id}.json`), 'utf8')).attempts, 19);
  });

  it('survives a torn write: the old envelope stays and the leftover .tmp is ignored', async () => {
    const { spool, store, commit } = await setup('torn');
    const id = newQueueId();
    await commit(id);
    await store.update({ ...envelope(id), attempts: 1 }, Date.now());
    // a crash in the middle of the next update: half a temp file, never renamed
    await writeFile(join(spool.queueDir, `${id}.json.tmp`), '{"version":1,"queueId":"');
    const restarted = testSpool({ dir: spool.dir });
    await restarted.init();
    const store2 = new QueueStore({
      spool: restarted,
      committer: restarted.committer,
      fsync: true,
      logger: logCapture().logger,
    });
    const scanned = await scanAll(store2);
    assert.equal(scanned.length, 1);
    assert.equal(scanned[0]?.attempts, 1);
    // and the next update goes through over the leftover
    await store2.update({ ...envelope(id), attempts: 2 }, Date.now());
    assert.equal((await scanAll(store2))[0]?.attempts, 2);
    assert.deepEqual((await readdir(restarted.queueDir)).sort(), [`${id}.json`, `${id}.msg`]);
  });

  it('moves a message without a usable envelope to corrupt/, logs and counts it', async () => {
    const { spool, store, lines, counted, commit } = await setup('corrupt');
    const good = newQueueId(1_000);
    const truncated = newQueueId(2_000);
    const wrongShape = newQueueId(3_000);
    await commit(good);
    await commit(truncated);
    // a message file cut short has no envelope footer left
    await truncate(join(spool.queueDir, `${truncated}.msg`), 10);
    await commit(wrongShape, { ...envelope(wrongShape), recipients: 'x' as unknown as [] });
    const scanned = await scanAll(store);
    assert.deepEqual(
      scanned.map((e) => e.queueId),
      [good],
    );
    assert.deepEqual((await readdir(join(spool.dir, 'corrupt'))).sort(), [
      `${truncated}.msg`,
      `${wrongShape}.msg`,
    ]);
    assert.deepEqual(await spool.list(), [good]);
    const logged = lines.filter((l) => l.event === 'queue_corrupt').map((l) => [l.queueId, l.reason]);
    assert.deepEqual(logged, [
      [truncated, 'corrupt_message'],
      [wrongShape, 'corrupt_envelope'],
    ]);
    assert.deepEqual(counted.quarantined, ['corrupt_message', 'corrupt_envelope']);
  });

  it('delivers from the envelope in the message file when the one beside it is damaged', async () => {
    const { spool, store, lines, counted, commit } = await setup('damaged-state');
    const notJson = newQueueId(1_000);
    const wrongShape = newQueueId(2_000);
    const directory = newQueueId(3_000);
    for (const id of [notJson, wrongShape, directory]) {
      await commit(id, testEnvelope(id, ['a@one.test', 'b@two.test'], Date.now()));
      // after an attempt: a delivered, b deferred
      await store.update(
        {
          ...testEnvelope(id, ['a@one.test', 'b@two.test'], Date.now()),
          attempts: 1,
          recipients: [
            { address: 'a@one.test', state: 'delivered' },
            { address: 'b@two.test', state: 'deferred', attempts: 1 },
          ],
        },
        Date.now(),
      );
    }
    await writeFile(join(spool.queueDir, `${notJson}.json`), '{"version":1,"queu');
    await writeFile(
      join(spool.queueDir, `${wrongShape}.json`),
      JSON.stringify({ ...envelope(wrongShape), recipients: 'x' }),
    );
    await rm(join(spool.queueDir, `${directory}.json`));
    await mkdir(join(spool.queueDir, `${directory}.json`));
    const scanned = await scanAll(store);
    // nobody is known to be done any more: both recipients are owed the message again
    assert.deepEqual(
      scanned.map((e) => [e.queueId, e.recipients.map((r) => `${r.address} ${r.state}`)]),
      [notJson, wrongShape, directory].map((id) => [id, ['a@one.test pending', 'b@two.test pending']]),
    );
    assert.deepEqual(
      (await readdir(join(spool.dir, 'corrupt'))).sort(),
      [`${notJson}.json`, `${wrongShape}.json`, `${directory}.json`].sort(),
    );
    assert.deepEqual(
      (await readdir(spool.queueDir)).sort(),
      [`${notJson}.msg`, `${wrongShape}.msg`, `${directory}.msg`].sort(),
    );
    const logged = lines.filter((l) => l.event === 'queue_recovered').map((l) => [l.queueId, l.reason]);
    assert.deepEqual(
      logged,
      [notJson, wrongShape, directory].map((id) => [id, 'damaged_state_file']),
    );
    assert.deepEqual(counted.recovered, ['damaged_state_file', 'damaged_state_file', 'damaged_state_file']);
    assert.deepEqual(counted.quarantined, []);
    // the next update writes a new envelope beside the message, which wins again
    await store.update({ ...envelope(notJson), attempts: 5 }, Date.now());
    assert.equal((await scanAll(store)).find((e) => e.queueId === notJson)?.attempts, 5);
  });

  it('starts over entries it cannot read: quarantines, logs and counts each, keeps the rest', async () => {
    const { spool, store, lines, counted, commit } = await setup('unreadable');
    const good = newQueueId(1_000);
    const dirMsg = newQueueId(2_000);
    const loop = newQueueId(3_000);
    const dangling = newQueueId(4_000);
    const fifo = newQueueId(5_000);
    const fifoState = newQueueId(6_000);
    await commit(good);
    await commit(fifoState);
    const q = spool.queueDir;
    await mkdir(join(q, `${dirMsg}.msg`));
    await symlink(`${loop}.msg`, join(q, `${loop}.msg`));
    await symlink(join(q, 'nowhere'), join(q, `${dangling}.msg`));
    // opening a FIFO for reading waits for a writer: the scan must not try
    execFileSync('mkfifo', [join(q, `${fifo}.msg`), join(q, `${fifoState}.json`)]);
    await mkdir(join(q, `${good}.json.tmp`));
    await writeFile(join(q, 'hello.txt'), 'not mail');
    await mkdir(join(q, 'lost+found'));
    const scanned = await scanAll(store);
    assert.deepEqual(
      scanned.map((e) => e.queueId),
      [good, fifoState],
    );
    assert.deepEqual((await readdir(q)).sort(), [`${good}.msg`, `${fifoState}.msg`].sort());
    assert.deepEqual(
      (await readdir(join(spool.dir, 'corrupt'))).sort(),
      [
        `${dirMsg}.msg`,
        `${loop}.msg`,
        `${dangling}.msg`,
        `${fifo}.msg`,
        `${fifoState}.json`,
        `${good}.json.tmp`,
        'hello.txt',
        'lost+found',
      ].sort(),
    );
    const logged = lines
      .filter((l) => l.event === 'queue_corrupt')
      .map((l) => `${l.queueId ?? l.entry} ${l.reason}`)
      .sort();
    assert.deepEqual(
      logged,
      [
        `${dirMsg} unreadable`,
        `${loop} unreadable`,
        `${dangling} unreadable`,
        `${fifo} unreadable`,
        `${good}.json.tmp unreadable`,
        'hello.txt unknown_entry',
        'lost+found unknown_entry',
      ].sort(),
    );
    assert.equal(counted.quarantined.length, 7);
    assert.deepEqual(counted.recovered, ['damaged_state_file']);
  });

  it('reopens recipients in no known state instead of taking them for done', async () => {
    const { store, lines, counted, commit } = await setup('unknown-state');
    const id = newQueueId();
    await commit(id, {
      ...testEnvelope(id, [], Date.now()),
      recipients: [
        { address: 'done@one.test', state: 'delivered' },
        { address: 'odd@one.test', state: 'sending' as 'pending', finishedAt: 'x' },
        { address: 'none@one.test' } as SpooledEnvelope['recipients'][number],
      ],
    });
    const [scanned] = await scanAll(store);
    assert.deepEqual(
      scanned?.recipients.map((r) => [r.address, r.state, r.finishedAt]),
      [
        ['done@one.test', 'delivered', undefined],
        ['odd@one.test', 'pending', undefined],
        ['none@one.test', 'pending', undefined],
      ],
    );
    const [line] = lines.filter((l) => l.event === 'queue_recovered');
    assert.deepEqual(
      [line?.reason, line?.recipients],
      ['unknown_recipient_state', ['odd@one.test', 'none@one.test']],
    );
    assert.deepEqual(counted.recovered, ['unknown_recipient_state']);
  });

  it('removes the envelope and the body', async () => {
    const { spool, store, commit } = await setup('remove');
    const id = newQueueId();
    await commit(id);
    await store.update({ ...envelope(id), attempts: 1 }, Date.now());
    await store.remove(id);
    assert.deepEqual(await readdir(spool.queueDir), []);
    assert.deepEqual(await scanAll(store), []);
    assert.equal(store.bodyPath(id), join(spool.queueDir, `${id}.msg`));
  });

  it('reads, updates and removes a message spooled in the older two-file layout', async () => {
    const { spool, store } = await setup('legacy');
    const id = newQueueId();
    await writeFile(join(spool.queueDir, `${id}.eml`), 'Subject: old\r\n\r\nbody\r\n');
    await writeFile(join(spool.queueDir, `${id}.json`), JSON.stringify({ ...envelope(id), size: 1 }));
    const [scanned] = await scanAll(store);
    assert.equal(scanned?.queueId, id);
    assert.equal(scanned?.size, 22, 'the size is the body file');
    assert.equal(store.bodyPath(id), join(spool.queueDir, `${id}.eml`));
    await store.update({ ...envelope(id), attempts: 1 }, Date.now());
    assert.deepEqual((await readdir(spool.queueDir)).sort(), [`${id}.eml`, `${id}.json`]);
    await store.remove(id);
    assert.deepEqual(await readdir(spool.queueDir), []);
  });
});
