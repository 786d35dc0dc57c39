// Spools made by tests, closed before their directories are removed: a spool's file
// thread may still be creating files ahead in incoming/ when a test ends.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Spool, type SpoolOptions } from '../spool/spool.ts';

const open = new Set<Spool>();

export function testSpool(options: SpoolOptions): Spool {
  const spool = new Spool(options);
  open.add(spool);
  return spool;
}

/** Stops every test spool's file thread (call before removing the test directory). */
async function closeTestSpools(): Promise<void> {
  const spools = [...open];
  open.clear();
  await Promise.all(spools.map((s) => s.close()));
}

/**
 * A temporary directory for the enclosing describe block: made before its tests and
 * removed after them, once the test spools are closed. Call the result for its path.
 */
export function suiteDir(prefix: string): () => string {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    await closeTestSpools();
    await rm(dir, { recursive: true, force: true });
  });
  return () => dir;
}
