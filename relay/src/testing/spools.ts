// Spools made by tests, closed before their directories are removed: a spool's file
// thread may still be creating files ahead in incoming/ when a test ends.
import { Spool, type SpoolOptions } from '../spool/spool.ts';

const open = new Set<Spool>();

export function testSpool(options: SpoolOptions): Spool {
  const spool = new Spool(options);
  open.add(spool);
  return spool;
}

/** Stops every test spool's file thread (call before removing the test directory). */
export async function closeTestSpools(): Promise<void> {
  const spools = [...open];
  open.clear();
  await Promise.all(spools.map((s) => s.close()));
}
