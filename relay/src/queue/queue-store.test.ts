import assert from 'node:assert/strict';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { newQueueId } from '../spool/queue-id.ts';
import { testEnvelope } from '../testing/queue-kit.ts';
import { suiteDir, testSpool } from '../testing/spools.ts';
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

describe('QueueStore', () => {
  const dir = suiteDir('sluice-queue-store-');

  async function setup(name: string) {
    const spool = testSpool({ dir: join(dir(), name) });
    await spool.init();
    const { lines, logger } = logCapture();
    const store = new QueueStore({ spool, committer: spool.committer, fsync: true, logger });
    const commit = async (id: string) => {
      const writer = spool.createWriter(id);
      writer.end('body');
      await writer.commit(envelope(id));
    };
    return { spool, store, lines, commit };
  }

  it('scans every envelope, oldest first', async () => {
    const { store, commit } = await setup('scan');
    const ids = [newQueueId(2_000), newQueueId(1_000), newQueueId(3_000)];
    for (const id of ids) await commit(id);
    assert.deepEqual(
      (await store.scan()).map((e) => e.queueId),
      [...ids].sort(),
    );
  });

  it('replaces an envelope atomically and durably', async () => {
    const { spool, store, commit } = await setup('update');
    const id = newQueueId();
    await commit(id);
    const before = spool.committer.fsyncs;
    await store.update({ ...envelope(id), attempts: 3 });
    assert.equal(JSON.parse(await readFile(join(spool.queueDir, `${id}.json`), 'utf8')).attempts, 3);
    assert.ok(spool.committer.fsyncs > before, 'the rename is made durable');
    // the newer envelope sits beside the message file and wins over the one inside it
    assert.deepEqual((await readdir(spool.queueDir)).sort(), [`${id}.json`, `${id}.msg`]);
    assert.equal((await store.scan())[0]?.attempts, 3);
  });

  it('writes concurrent updates of one message in call order', async () => {
    const { spool, store, commit } = await setup('order');
    const id = newQueueId();
    await commit(id);
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.update({ ...envelope(id), attempts: i })));
    assert.equal(JSON.parse(await readFile(join(spool.queueDir, `${id}.json`), 'utf8')).attempts, 19);
  });

  it('survives a torn write: the old envelope stays and the leftover .tmp is ignored', async () => {
    const { spool, store, commit } = await setup('torn');
    const id = newQueueId();
    await commit(id);
    await store.update({ ...envelope(id), attempts: 1 });
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
    const scanned = await store2.scan();
    assert.equal(scanned.length, 1);
    assert.equal(scanned[0]?.attempts, 1);
    // and the next update goes through over the leftover
    await store2.update({ ...envelope(id), attempts: 2 });
    assert.equal((await store2.scan())[0]?.attempts, 2);
    assert.deepEqual((await readdir(restarted.queueDir)).sort(), [`${id}.json`, `${id}.msg`]);
  });

  it('moves a corrupt envelope and its message to corrupt/ and logs it', async () => {
    const { spool, store, lines, commit } = await setup('corrupt');
    const good = newQueueId(1_000);
    const bad = newQueueId(2_000);
    const wrongShape = newQueueId(3_000);
    const truncated = newQueueId(4_000);
    await commit(good);
    await commit(bad);
    await commit(wrongShape);
    await commit(truncated);
    // a message file cut short has no envelope footer left
    await truncate(join(spool.queueDir, `${truncated}.msg`), 10);
    await writeFile(join(spool.queueDir, `${bad}.json`), '{"version":1,"queu');
    await writeFile(
      join(spool.queueDir, `${wrongShape}.json`),
      JSON.stringify({ ...envelope(wrongShape), recipients: 'x' }),
    );
    const scanned = await store.scan();
    assert.deepEqual(
      scanned.map((e) => e.queueId),
      [good],
    );
    assert.deepEqual((await readdir(join(spool.dir, 'corrupt'))).sort(), [
      `${bad}.json`,
      `${bad}.msg`,
      `${wrongShape}.json`,
      `${wrongShape}.msg`,
      `${truncated}.msg`,
    ]);
    assert.deepEqual(await spool.list(), [good]);
    const logged = lines.filter((l) => l.event === 'queue_corrupt').map((l) => l.queueId);
    assert.deepEqual(logged, [bad, wrongShape, truncated]);
  });

  it('removes the envelope and the body', async () => {
    const { spool, store, commit } = await setup('remove');
    const id = newQueueId();
    await commit(id);
    await store.update({ ...envelope(id), attempts: 1 });
    await store.remove(id);
    assert.deepEqual(await readdir(spool.queueDir), []);
    assert.deepEqual(await store.scan(), []);
    assert.equal(store.bodyPath(id), join(spool.queueDir, `${id}.msg`));
  });

  it('reads, updates and removes a message spooled in the older two-file layout', async () => {
    const { spool, store } = await setup('legacy');
    const id = newQueueId();
    await writeFile(join(spool.queueDir, `${id}.eml`), 'Subject: old\r\n\r\nbody\r\n');
    await writeFile(join(spool.queueDir, `${id}.json`), JSON.stringify({ ...envelope(id), size: 1 }));
    const [scanned] = await store.scan();
    assert.equal(scanned?.queueId, id);
    assert.equal(scanned?.size, 22, 'the size is the body file');
    assert.equal(store.bodyPath(id), join(spool.queueDir, `${id}.eml`));
    await store.update({ ...envelope(id), attempts: 1 });
    assert.deepEqual((await readdir(spool.queueDir)).sort(), [`${id}.eml`, `${id}.json`]);
    await store.remove(id);
    assert.deepEqual(await readdir(spool.queueDir), []);
  });
});
