// File operations of the spool. Which ones block the event loop is a measured choice
// (bench/README.md). Handing an operation to libuv's thread pool costs the main thread a
// queue hand-off and a wake-up: about seven futex calls and two thread switches each, and
// a message took ~18 operations. So the quick ones are synchronous: close, rename, and
// writes of up to SMALL_WRITE_BYTES (a copy into the page cache). Creating and unlinking
// files stay in the pool: on ext4 they wait for the journal while other messages' fsyncs
// commit it (0.1–0.2 ms each, measured), which the event loop must not. fsync and writes
// of large messages are asynchronous too.
import { closeSync, fdatasync, fsync, openSync, unlink, unlinkSync, writev, writevSync } from 'node:fs';

/** Messages up to this size are written with one synchronous call; larger ones stream. */
export const SMALL_WRITE_BYTES = 256 * 1024;

export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fsync(fd, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * fdatasync: the file's data and what reading it back needs (its size, its blocks), not its
 * times. For a file whose times mean nothing (a message file; not an envelope beside one,
 * whose mtime is its next attempt).
 */
export function fdatasyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fdatasync(fd, (err) => (err ? reject(err) : resolve()));
  });
}

/** fsync of a file or directory by path (the directory entry of a rename). */
export async function fsyncPath(path: string): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of the buffers (writev may write less than asked). */
export function writeAllSync(fd: number, buffers: Buffer[]): void {
  let left = buffers;
  while (left.length > 0) {
    const written = writevSync(fd, left);
    if (written === 0) throw new Error('write made no progress');
    left = skipBytes(left, written);
  }
}

export function writeAll(fd: number, buffers: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const next = (left: Buffer[]): void => {
      if (left.length === 0) return resolve();
      writev(fd, left, (err, written) => {
        if (err) reject(err);
        else if (written === 0) reject(new Error('write made no progress'));
        else next(skipBytes(left, written));
      });
    };
    next(buffers);
  });
}

function skipBytes(buffers: Buffer[], count: number): Buffer[] {
  let skip = count;
  let i = 0;
  while (i < buffers.length && skip >= (buffers[i] as Buffer).length) {
    skip -= (buffers[i] as Buffer).length;
    i++;
  }
  const rest = buffers.slice(i);
  if (skip > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(skip);
  return rest;
}

/** unlink, where a file already gone is fine. */
export function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** unlinkIfThere in the thread pool, for removals nobody waits on. */
export function unlinkLater(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    unlink(path, (err) => (err && err.code !== 'ENOENT' ? reject(err) : resolve()));
  });
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed or never valid: nothing to release
  }
}
