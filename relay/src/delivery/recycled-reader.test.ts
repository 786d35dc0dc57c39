import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteDir } from '../testing/spools.ts';
import { waitFor } from '../testing/wait-for.ts';
import { RecycledFileReader, recycle } from './recycled-reader.ts';

describe('RecycledFileReader', () => {
  const dir = suiteDir('sluice-recycled-');

  it('reads the first size bytes in chunks, with at most `buffers` out until one is recycled', async () => {
    const content = randomBytes(4 * 4096 + 100);
    const path = join(dir(), 'message');
    await writeFile(path, Buffer.concat([content, Buffer.from('envelope after the body')]));
    const handle = await open(path, 'r');
    try {
      const reader = new RecycledFileReader(handle, content.length, { chunkBytes: 4096, buffers: 2 });
      const chunks: Buffer[] = [];
      const copies: Buffer[] = [];
      let ended = false;
      reader.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        // the bytes as they were when given out, before the buffer could be used again
        copies.push(Buffer.from(chunk));
      });
      reader.on('end', () => {
        ended = true;
      });
      await waitFor('two chunks', () => chunks.length === 2);
      await sleep(50);
      assert.equal(chunks.length, 2, 'two chunks out: the third read waits');

      const [first, second] = chunks as [Buffer, Buffer];
      recycle(first);
      await waitFor('the third chunk', () => chunks.length === 3);
      const third = chunks[2] as Buffer;
      assert.equal(third.buffer, first.buffer, 'the third chunk is read into the recycled buffer');
      recycle(first); // the first chunk again: its buffer now holds the third, and stays out
      await sleep(50);
      assert.equal(chunks.length, 3, 'a chunk given back twice does not free its buffer twice');

      recycle(second);
      recycle(third);
      await waitFor('the last chunks', () => chunks.length === 5);
      recycle(chunks[3] as Buffer);
      recycle(chunks[4] as Buffer);
      await waitFor('the end', () => ended);
      assert.deepEqual(
        copies.map((c) => c.length),
        [4096, 4096, 4096, 4096, 100],
      );
      assert.ok(Buffer.concat(copies).equals(content), 'exactly the body, not the envelope after it');
    } finally {
      await handle.close();
    }
  });

  it('fails when the file is shorter than the size it was given', async () => {
    const path = join(dir(), 'short');
    await writeFile(path, 'only this');
    const handle = await open(path, 'r');
    try {
      const reader = new RecycledFileReader(handle, 100, { chunkBytes: 64, buffers: 2 });
      const failed = new Promise<Error>((resolve) => reader.once('error', resolve));
      reader.on('data', (chunk: Buffer) => recycle(chunk));
      assert.match((await failed).message, /spool file ended at 9 of 100 bytes/);
    } finally {
      await handle.close();
    }
  });

  it('ignores chunks that did not come from a reader', () => {
    assert.doesNotThrow(() => recycle(Buffer.from('something else')));
  });
});
