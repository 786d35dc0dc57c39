// Which worker delivers which spool directory. With `workers: N` worker i writes to
// <spoolDir>/w<i>; a directory w<k> left by an earlier run with more workers (k >= N)
// belongs to worker k mod N, and the single-process spool (<spoolDir>/queue, hold) to
// worker 0; a single process owns every w<k>. Nothing acknowledged is left without an
// owner whichever way the count changes.
//
// The owner takes such mail over before it starts: each message file is renamed into its
// own spool (same filesystem, so the rename is atomic and the message is in exactly one
// directory at any moment), then the envelope beside it, in the order hold-area.ts uses.
// A crash between the two renames leaves the envelope behind; the next adoption moves it
// to its message. Afterwards the owner's scan finds the mail like any other queued mail,
// and the queue API shows it.
import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import { fsyncPath } from '../spool/files.ts';
import { ENVELOPE, LEGACY_BODY, MESSAGE } from '../spool/message-file.ts';

const WORKER_DIR = /^w(0|[1-9][0-9]{0,5})$/;

/** The spool directory of worker `index`. */
export function workerSpoolDir(spoolDir: string, index: number): string {
  return join(spoolDir, `w${index}`);
}

/** The worker directories present in the spool, by number. */
async function workerDirs(spoolDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(spoolDir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.flatMap((name) => {
    const match = WORKER_DIR.exec(name);
    return match ? [Number(match[1])] : [];
  });
}

/**
 * The spools whose mail the owner takes over: for a worker (index of count), the w<k>
 * beyond the count that fall to it and, for worker 0, the single-process spool; for a
 * single process (count 1, index undefined), every w<k>.
 */
export async function spoolsToAdopt(spoolDir: string, count: number, index?: number): Promise<string[]> {
  const dirs = await workerDirs(spoolDir);
  if (index === undefined) return dirs.sort((a, b) => a - b).map((k) => workerSpoolDir(spoolDir, k));
  const owned = dirs
    .filter((k) => k >= count && k % count === index)
    .sort((a, b) => a - b)
    .map((k) => workerSpoolDir(spoolDir, k));
  return index === 0 ? [spoolDir, ...owned] : owned;
}

async function there(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Moves the messages of one directory (queue/ or hold/) into another; returns how many.
 * `besides` are the other directories where a message of a left-over envelope may be (a
 * held message's envelope can stay in queue/: hold-area.ts puts them together again).
 */
async function moveMessages(
  from: string,
  to: string,
  besides: readonly string[],
  onCollision: (id: string) => void,
): Promise<number> {
  const names = await namesIn(from);
  if (names.length === 0) return 0;
  await mkdir(to, { recursive: true });
  const present = new Set(names);
  let moved = 0;
  for (const name of names) {
    const body = name.endsWith(MESSAGE) ? MESSAGE : name.endsWith(LEGACY_BODY) ? LEGACY_BODY : undefined;
    if (body === undefined) continue;
    const id = name.slice(0, -body.length);
    // a queue id is unique across relays (40 random bits); never overwrite one that is there
    if (await there(join(to, name))) {
      onCollision(id);
      continue;
    }
    await rename(join(from, name), join(to, name));
    if (present.has(`${id}${ENVELOPE}`))
      await rename(join(from, `${id}${ENVELOPE}`), join(to, `${id}${ENVELOPE}`));
    moved++;
  }
  // an envelope whose message an earlier adoption moved before it was cut short
  for (const name of names) {
    if (!name.endsWith(ENVELOPE) || !(await there(join(from, name)))) continue;
    const id = name.slice(0, -ENVELOPE.length);
    if (present.has(`${id}${MESSAGE}`) || present.has(`${id}${LEGACY_BODY}`)) continue;
    for (const dir of [to, ...besides]) {
      if (!(await there(join(dir, `${id}${MESSAGE}`))) && !(await there(join(dir, `${id}${LEGACY_BODY}`))))
        continue;
      if (!(await there(join(to, name)))) await rename(join(from, name), join(to, name));
      break;
    }
  }
  return moved;
}

/**
 * Moves the queued and held mail of each spool in `from` into the spool `to` (queue/ to
 * queue/, hold/ to hold/), durably when fsync is on. Unfinished writes (incoming/) were
 * never acknowledged and stay; quarantined files (corrupt/) stay where they are.
 */
export async function adoptSpools(options: {
  from: readonly string[];
  to: string;
  fsync: boolean;
  onCollision?: (dir: string, id: string) => void;
}): Promise<{ moved: number; perSpool: Record<string, number> }> {
  const perSpool: Record<string, number> = {};
  let moved = 0;
  for (const dir of options.from) {
    let count = 0;
    // hold/ first: a held message's envelope left in queue/ then finds its message moved
    for (const [sub, other] of [
      ['hold', 'queue'],
      ['queue', 'hold'],
    ] as const) {
      const source = join(dir, sub);
      const target = join(options.to, sub);
      const besides = [join(options.to, other)];
      const n = await moveMessages(source, target, besides, (id) => options.onCollision?.(source, id));
      if (n > 0 && options.fsync) {
        await fsyncPath(target);
        await fsyncPath(source);
      }
      count += n;
    }
    if (count > 0) perSpool[dir] = count;
    moved += count;
  }
  return { moved, perSpool };
}

/**
 * Takes over the mail of `from` into the spool `to` before the relay starts (durably),
 * and says so in the log: a collision, and how many messages came from where.
 */
export async function takeOverSpools(
  from: readonly string[],
  to: string,
  logger: Logger | undefined,
): Promise<void> {
  const adopted = await adoptSpools({
    from,
    to,
    fsync: true,
    onCollision: (dir, queueId) =>
      logger?.error(
        { event: 'spool_adopt_collision', dir, queueId },
        'a message with this queue id is already queued here; left where it is',
      ),
  });
  if (adopted.moved > 0)
    logger?.info(
      { event: 'spool_adopted', messages: adopted.moved, from: adopted.perSpool },
      'took over queued mail',
    );
}
