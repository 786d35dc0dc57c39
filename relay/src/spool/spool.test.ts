import assert from 'node:assert/strict';
import { pbkdf2 } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../observability/logger.ts';
import { QueueStore } from '../queue/queue-store.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { suiteDir, testSpool } from '../testing/spools.ts';
import { waitFor } from '../testing/wait-for.ts';
import type { SpooledEnvelope } from './envelope.ts';
import { readSpooled, readTrailer } from './message-file.ts';
import { newQueueId, QUEUE_ID_PATTERN } from './queue-id.ts';
import type { Spool, SpoolOptions } from './spool.ts';

function envelope(queueId: string): SpooledEnvelope {
  const recipients: SpooledEnvelope['recipients'] = [{ address: 'b@example.net', state: 'pending' }];
  return spooledEnvelope({ queueId, sender: 'a@example.com', recipients, size: 5 });
}

describe('Spool', () => {
  const dir = suiteDir('sluice-spool-');

  /** A spool whose file thread has created files ahead in incoming/. */
  async function spoolWithFilesAhead(name: string, options: Omit<SpoolOptions, 'dir'> = {}): Promise<Spool> {
    const spool = testSpool({ ...options, dir: join(dir(), name) });
    await spool.init();
    await waitFor('files created ahead', async () => (await readdir(spool.incomingDir)).length >= 16);
    return spool;
  }

  it('commits the message and its envelope as one file in queue/ and tells its listeners', async () => {
    const spool = testSpool({ dir: join(dir(), 'a') });
    await spool.init();
    const seen: string[] = [];
    spool.onCommitted((m) => seen.push(m.queueId));
    const id = newQueueId();
    const writer = spool.createWriter(id);
    writer.end(Buffer.from('hello'));
    const given = envelope(id);
    const message = await writer.commit({ ...given, size: 999 });
    assert.deepEqual(await readdir(spool.queueDir), [`${id}.msg`]);
    const file = await readFile(message.bodyPath);
    assert.equal(file.subarray(0, 5).toString(), 'hello', 'the message comes first');
    const trailer = await readTrailer(message.bodyPath);
    assert.equal(trailer.bodyBytes, 5);
    // the spool sets the size from what was written, whatever the caller said
    assert.deepEqual(trailer.envelope, { ...given, size: 5 });
    assert.equal(message.envelope.size, 5);
    assert.deepEqual(await spool.list(), [id]);
    assert.deepEqual(seen, [id]);
    assert.deepEqual(await readdir(spool.incomingDir), []);
  });

  it('abort leaves nothing behind', async () => {
    const spool = testSpool({ dir: join(dir(), 'b') });
    await spool.init();
    const writer = spool.createWriter(newQueueId());
    writer.write(Buffer.alloc(100_000));
    await writer.abort();
    assert.deepEqual(await readdir(spool.incomingDir), []);
    assert.deepEqual(await spool.list(), []);
  });

  it('abort leaves nothing behind while the message file is still being opened', async () => {
    // no file thread, so no file made ahead: the writer opens its own file. libuv's four
    // threads are kept busy so that the open waits behind them (as on a loaded machine)
    // and the abort comes before it: the file must not appear after the abort
    const spool = testSpool({ dir: join(dir(), 'b2'), fileThread: false });
    await spool.init();
    const busy = Array.from(
      { length: 4 },
      () => new Promise((resolve) => pbkdf2('x', 'salt', 300_000, 32, 'sha256', resolve)),
    );
    const writer = spool.createWriter(newQueueId());
    writer.write(Buffer.alloc(100_000));
    await writer.abort();
    await Promise.all(busy);
    assert.deepEqual(await readdir(spool.incomingDir), []);
    assert.deepEqual(await spool.list(), []);
  });

  it('rebuilds the queue from a directory scan and removes unfinished writes', async () => {
    const spool = testSpool({ dir: join(dir(), 'c') });
    await spool.init();
    const kept = newQueueId(1_000);
    const w = spool.createWriter(kept);
    w.end('x');
    await w.commit(envelope(kept));
    // a message of the older layout (body and envelope in two files) stays and is listed
    const legacy = newQueueId(1_500);
    await writeFile(join(spool.queueDir, `${legacy}.eml`), 'old body');
    await writeFile(join(spool.queueDir, `${legacy}.json`), JSON.stringify(envelope(legacy)));
    // what a crash can leave: a half-written incoming file, a body of the older layout
    // whose envelope never landed, an envelope update never renamed into place, and an
    // envelope beside no message (its message was being removed)
    await writeFile(join(spool.incomingDir, `${newQueueId(1_800)}.msg`), 'partial');
    await writeFile(join(spool.queueDir, `${newQueueId(2_000)}.eml`), 'orphan');
    await writeFile(join(spool.queueDir, `${kept}.json.tmp`), '{"torn":');
    await writeFile(join(spool.queueDir, `${newQueueId(2_500)}.json`), JSON.stringify(envelope('x')));
    const restarted = testSpool({ dir: join(dir(), 'c') });
    await restarted.init();
    // incoming/ is cleared at init; queue/ by the queue's scan, which the relay runs in the background
    const store = new QueueStore({
      spool: restarted,
      committer: restarted.committer,
      fsync: true,
      logger: createLogger({ destination: { write: () => undefined } }),
    });
    const found: string[] = [];
    assert.equal(await store.scan((id) => void found.push(id), { now: Date.now }), 2);
    assert.deepEqual(found.sort(), [kept, legacy]);
    assert.deepEqual(await restarted.list(), [kept, legacy]);
    assert.deepEqual(
      (await readdir(restarted.queueDir)).sort(),
      [`${kept}.msg`, `${legacy}.eml`, `${legacy}.json`].sort(),
    );
    assert.deepEqual(await readdir(restarted.incomingDir), []);
    assert.equal((await readSpooled(restarted.queueDir, legacy)).body.toString(), 'old body');
    assert.equal((await readSpooled(restarted.queueDir, kept)).body.toString(), 'x');
  });

  it('writes into files its thread created ahead, and its thread deletes removed messages', async () => {
    const spool = await spoolWithFilesAhead('thread');
    const id = newQueueId();
    const writer = spool.createWriter(id);
    writer.end('ahead');
    const message = await writer.commit(envelope(id));
    assert.equal((await readSpooled(spool.queueDir, id)).body.toString(), 'ahead');
    await spool.removeFile(message.bodyPath);
    // gone from queue/ at once (the removal's commit point), then deleted from trash/
    assert.deepEqual(await readdir(spool.queueDir), []);
    await waitFor('trash emptied by the thread', async () => (await readdir(spool.trashDir)).length === 0);
    await spool.close();
    assert.deepEqual(await readdir(spool.incomingDir), [], 'files made ahead are removed on close');
  });

  /** A spool whose delivered messages' files are reused on the given terms. */
  async function reusingSpool(name: string, fileReuse: NonNullable<SpoolOptions['fileReuse']>) {
    const spool = await spoolWithFilesAhead(name, { fileReuse });
    const commit = async (text: string) => {
      const id = newQueueId();
      const writer = spool.createWriter(id);
      writer.end(text);
      return writer.commit(envelope(id));
    };
    return { spool, commit };
  }

  it("makes a delivered message's file the next one's, left whole until it has waited", async () => {
    const afterMs = 3_000; // far beyond the steps below that must come before it, on a loaded machine too
    const { spool, commit } = await reusingSpool('reuse', { afterMs, maxFiles: 10, maxBytes: 1 << 20 });
    /** Takes 20 of the files made ahead, so that the thread is asked for more, and waits for its first. */
    const useUpFilesAhead = async () => {
      const before = new Set(await readdir(spool.incomingDir));
      for (let i = 0; i < 20; i++) await spool.createWriter(newQueueId()).abort();
      await waitFor('a file made ahead again', async () =>
        (await readdir(spool.incomingDir)).some((name) => !before.has(name)),
      );
    };
    const delivered = await commit('delivered message');
    const inode = statSync(delivered.bodyPath).ino;
    const reader = openSync(delivered.bodyPath, 'r'); // opened before the removal, as a listing may
    const removedAt = Date.now();
    try {
      await spool.removeFile(delivered.bodyPath, { reuse: true });
      assert.deepEqual(await readdir(spool.queueDir), [], 'gone from queue/ at once');
      await waitFor('the file waiting in trash/', async () => (await readdir(spool.trashDir)).length === 1);
      await useUpFilesAhead();
      assert.ok(Date.now() - removedAt < afterMs, 'the machine was too slow for this test');
      assert.equal((await readdir(spool.trashDir)).length, 1, 'not reused before it has waited');
      const read = Buffer.alloc(17);
      readSync(reader, read, 0, 17, 0);
      assert.equal(read.toString(), 'delivered message', 'a reader that opened it still reads it');
    } finally {
      closeSync(reader);
    }
    await new Promise((resolve) => setTimeout(resolve, afterMs - (Date.now() - removedAt) + 100));
    await useUpFilesAhead();
    const reused = await waitFor('the delivered file ready again in incoming/', async () => {
      for (const name of await readdir(spool.incomingDir)) {
        const stat = statSync(join(spool.incomingDir, name), { throwIfNoEntry: false });
        if (stat?.ino === inode) return { name, size: stat.size };
      }
      return undefined;
    });
    assert.match(reused.name, /\.spare$/);
    assert.equal(reused.size, 0, 'emptied before it is handed out');
    assert.deepEqual(await readdir(spool.trashDir), []);
    // the next messages, one of them written into it, are as sent
    let inReused: string | undefined;
    for (let i = 0; i < 64 && inReused === undefined; i++) {
      const message = await commit(`next message ${i}`);
      assert.equal((await readSpooled(spool.queueDir, message.queueId)).body.toString(), `next message ${i}`);
      if (statSync(message.bodyPath).ino === inode) inReused = message.queueId;
    }
    assert.ok(inReused, 'a later message lives in the reused file');
  });

  it('keeps at most maxFiles and maxBytes of files for reuse, deleting the oldest, and none after close', async () => {
    const byCount = await reusingSpool('reuse-count', { afterMs: 60_000, maxFiles: 2, maxBytes: 1 << 20 });
    const three = [await byCount.commit('one'), await byCount.commit('two'), await byCount.commit('three')];
    for (const m of three) await byCount.spool.removeFile(m.bodyPath, { reuse: true });
    const names = three.map((m) => `${m.queueId}.msg`);
    await waitFor('the newest two wait', async () => {
      const left = (await readdir(byCount.spool.trashDir)).sort();
      return left.length === 2 && left.join() === names.slice(1).sort().join();
    });
    await byCount.spool.close();
    assert.deepEqual(await readdir(byCount.spool.trashDir), [], 'close deletes what waits');

    const byBytes = await reusingSpool('reuse-bytes', { afterMs: 60_000, maxFiles: 100, maxBytes: 1 });
    const big = await byBytes.commit('more than a byte');
    await byBytes.spool.removeFile(big.bodyPath, { reuse: true });
    const other = await byBytes.commit('another');
    await byBytes.spool.removeFile(other.bodyPath);
    await waitFor('both deleted', async () => (await readdir(byBytes.spool.trashDir)).length === 0);
  });

  it("keeps a message being written when the file thread stops (the file is the main thread's)", async () => {
    const spool = await spoolWithFilesAhead('stop');
    const id = newQueueId();
    const writer = spool.createWriter(id);
    writer.write('first half, ');
    await spool.close(); // the thread exits; Node closes whatever descriptors it opened
    writer.end('second half');
    await writer.commit(envelope(id));
    assert.equal((await readSpooled(spool.queueDir, id)).body.toString(), 'first half, second half');
  });

  it('works without its thread, and clears trash/ left by a crash', async () => {
    const spool = testSpool({ dir: join(dir(), 'nothread'), fileThread: false });
    await spool.init();
    await writeFile(join(spool.trashDir, 'LEFT.msg'), 'removed before a crash');
    const id = newQueueId();
    const writer = spool.createWriter(id);
    writer.end('own file');
    const message = await writer.commit(envelope(id));
    await spool.removeFile(message.bodyPath);
    assert.deepEqual(await readdir(spool.queueDir), []);
    const restarted = testSpool({ dir: join(dir(), 'nothread'), fileThread: false });
    await restarted.init();
    assert.deepEqual(await readdir(restarted.trashDir), []);
  });

  it('shares directory fsyncs between concurrent commits with group commit on', async () => {
    const spool = testSpool({ dir: join(dir(), 'd'), groupCommit: true });
    await spool.init();
    const ids = Array.from({ length: 50 }, (_, i) => newQueueId(3_000 + i));
    await Promise.all(
      ids.map((id) => {
        const writer = spool.createWriter(id);
        writer.end(`message ${id}`);
        return writer.commit(envelope(id));
      }),
    );
    assert.deepEqual(await spool.list(), ids);
    for (const id of ids)
      assert.equal((await readSpooled(spool.queueDir, id)).body.toString(), `message ${id}`);
    assert.equal(spool.committer.requests, 50);
    assert.ok(spool.committer.fsyncs <= 10, `${spool.committer.fsyncs} directory fsyncs for 50 commits`);
  });

  it('fsyncs the directory once per commit with group commit off', async () => {
    const spool = testSpool({ dir: join(dir(), 'e'), groupCommit: false });
    await spool.init();
    const ids = Array.from({ length: 10 }, (_, i) => newQueueId(4_000 + i));
    await Promise.all(
      ids.map((id) => {
        const writer = spool.createWriter(id);
        writer.end('x');
        return writer.commit(envelope(id));
      }),
    );
    assert.deepEqual(await spool.list(), ids);
    assert.equal(spool.committer.fsyncs, 10);
  });

  it('makes queue ids that sort by arrival', () => {
    const a = newQueueId(1_700_000_000_000);
    const b = newQueueId(1_700_000_000_001);
    assert.match(a, QUEUE_ID_PATTERN);
    assert.ok(a < b);
  });
});
