// The spool's file thread (a worker_threads worker; see file-worker.ts). It keeps a few
// empty files ready in incoming/ and deletes removed messages from trash/, both with
// synchronous calls that block only this thread, and talks to the main thread in
// batches: one message per batch instead of a thread-pool hand-off per file. It hands
// over paths, never descriptors: Node closes a worker's descriptors when it exits.
//
// A file ready for the next message is, where it can be, the file of a delivered one:
// creating a file costs ext4 an inode allocation, which while other messages' fsyncs
// commit its journal took about eight times as long as the truncate and rename that
// reuse one (bench/README.md, "Ninth pass"). A delivered message's file waits in trash/,
// whole, for `reuse.afterMs` first, so that a reader that opened it before its removal
// (a listing reading its envelope) still reads what it opened; then it is emptied and
// renamed into incoming/. What waits is bounded in files and bytes; beyond, the oldest
// is deleted.
import { closeSync, openSync, renameSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { unlinkIfThere } from './files.ts';

export type ToThread = { spares: number } | { unlink: string[] } | { reuse: string[] } | { stop: true };
export type FromThread = { spares: string[] } | { error: string };

/** How delivered messages' files are kept for reuse. */
export interface FileReuse {
  /** How long a removed file is left whole before it is emptied for another message. */
  afterMs: number;
  /** At most this many files wait in trash/ ... */
  maxFiles: number;
  /** ... holding at most this many bytes. */
  maxBytes: number;
}

export interface FileThreadData {
  incomingDir: string;
  prefix: string;
  reuse: FileReuse;
}

const { incomingDir, prefix, reuse } = workerData as FileThreadData;
let serial = 0;

interface Waiting {
  path: string;
  bytes: number;
  since: number;
}

/** Delivered messages' files in trash/, oldest first. */
const waiting: Waiting[] = [];
let waitingBytes = 0;

function createSpares(count: number): void {
  const spares: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const path = join(incomingDir, `${prefix}-${++serial}.spare`);
      if (!reuseInto(path)) closeSync(openSync(path, 'wx'));
      spares.push(path);
    }
  } catch (err: unknown) {
    post({ error: `cannot create a spool file ahead: ${String(err)}` });
  }
  if (spares.length > 0) post({ spares });
}

/** Empties the oldest waiting file that has waited long enough and moves it to `path`. */
function reuseInto(path: string): boolean {
  const first = waiting[0];
  if (first === undefined || performance.now() - first.since < reuse.afterMs) return false;
  const oldest = takeOldest();
  try {
    truncateSync(oldest.path, 0);
    renameSync(oldest.path, path);
    return true;
  } catch {
    deleteFile(oldest.path);
    return false;
  }
}

function keepForReuse(paths: string[]): void {
  const now = performance.now();
  for (const path of paths) {
    let bytes: number;
    try {
      bytes = statSync(path).size;
    } catch {
      continue; // already gone
    }
    waiting.push({ path, bytes, since: now });
    waitingBytes += bytes;
  }
  while (waiting.length > reuse.maxFiles || waitingBytes > reuse.maxBytes) deleteFile(takeOldest().path);
}

/** Takes the oldest waiting file out of the count (call only when one waits). */
function takeOldest(): Waiting {
  const oldest = waiting.shift() as Waiting;
  waitingBytes -= oldest.bytes;
  return oldest;
}

function deleteFile(path: string): void {
  try {
    unlinkIfThere(path);
  } catch (err: unknown) {
    post({ error: `cannot delete ${path}: ${String(err)}` });
  }
}

function post(message: FromThread): void {
  parentPort?.postMessage(message);
}

parentPort?.on('message', (message: ToThread) => {
  if ('spares' in message) createSpares(message.spares);
  else if ('unlink' in message) for (const path of message.unlink) deleteFile(path);
  else if ('reuse' in message) keepForReuse(message.reuse);
  else {
    for (const file of waiting.splice(0)) deleteFile(file.path);
    process.exit(0);
  }
});
