// Which spool directories a worker owns, and the move of their mail into its own spool:
// real files in a temporary directory (the move never reads a message, only names).
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { suiteDir } from '../testing/spools.ts';
import { adoptSpools, spoolsToAdopt, workerSpoolDir } from './spool-ownership.ts';

async function put(path: string, text: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, text);
}

const list = async (path: string) => (await readdir(path).catch(() => [])).sort();

describe('spool ownership', () => {
  const dir = suiteDir('sluice-spool-ownership-');

  it('gives every w<k> beyond the count to worker k mod N, and the single-process spool to worker 0', async () => {
    const spool = join(dir(), 'owners');
    for (const k of [0, 1, 2, 3, 4]) await mkdir(join(spool, `w${k}`, 'queue'), { recursive: true });
    await mkdir(join(spool, 'queue'), { recursive: true });
    assert.deepEqual(await spoolsToAdopt(spool, 2, 0), [
      spool,
      workerSpoolDir(spool, 2),
      workerSpoolDir(spool, 4),
    ]);
    assert.deepEqual(await spoolsToAdopt(spool, 2, 1), [workerSpoolDir(spool, 3)]);
    assert.deepEqual(
      await spoolsToAdopt(spool, 1),
      [0, 1, 2, 3, 4].map((k) => workerSpoolDir(spool, k)),
      'a single process owns every worker spool',
    );
    assert.deepEqual(await spoolsToAdopt(join(dir(), 'absent'), 3, 0), [join(dir(), 'absent')]);
  });

  it('moves queued and held messages with their envelopes, and never overwrites one', async () => {
    const spool = join(dir(), 'move');
    const from = workerSpoolDir(spool, 2);
    const to = workerSpoolDir(spool, 0);
    await put(join(from, 'queue', 'A.msg'), 'message A');
    await put(join(from, 'queue', 'A.json'), 'envelope A');
    await put(join(from, 'queue', 'B.eml'), 'legacy B');
    await put(join(from, 'queue', 'B.json'), 'envelope B');
    await put(join(from, 'hold', 'C.msg'), 'held C');
    // C's envelope left in queue/ by a hold that a crash cut short
    await put(join(from, 'queue', 'C.json'), 'envelope C');
    // an earlier move cut short: D's message is already in the target, its envelope not
    await put(join(to, 'queue', 'D.msg'), 'message D');
    await put(join(from, 'queue', 'D.json'), 'envelope D');
    // the same id on both sides (cannot happen with random ids): left where it is
    await put(join(from, 'queue', 'E.msg'), 'message E, source');
    await put(join(to, 'queue', 'E.msg'), 'message E, target');
    await put(join(from, 'incoming', 'F.msg'), 'unfinished');
    const collisions: string[] = [];
    const result = await adoptSpools({
      from: [from],
      to,
      fsync: true,
      onCollision: (_dir, id) => collisions.push(id),
    });
    assert.equal(result.moved, 3);
    assert.deepEqual(result.perSpool, { [from]: 3 });
    assert.deepEqual(await list(join(to, 'queue')), [
      'A.json',
      'A.msg',
      'B.eml',
      'B.json',
      'C.json',
      'D.json',
      'D.msg',
      'E.msg',
    ]);
    assert.deepEqual(await list(join(to, 'hold')), ['C.msg']);
    assert.deepEqual(await list(join(from, 'queue')), ['E.msg']);
    assert.deepEqual(await list(join(from, 'incoming')), ['F.msg'], 'an unacknowledged write is not taken');
    assert.equal(await readFile(join(to, 'queue', 'E.msg'), 'utf8'), 'message E, target');
    assert.deepEqual(collisions, ['E']);
  });
});
