// The spool's file thread (a worker_threads worker; see file-worker.ts). It keeps a few
// empty files created ahead in incoming/ and deletes removed messages from trash/, both
// with synchronous calls that block only this thread, and talks to the main thread in
// batches: one message per batch instead of a thread-pool hand-off per file. It hands
// over paths, never descriptors: Node closes a worker's descriptors when it exits.
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { unlinkIfThere } from './files.ts';

export type ToThread = { spares: number } | { unlink: string[] } | { stop: true };
export type FromThread = { spares: string[] } | { error: string };

const { incomingDir, prefix } = workerData as { incomingDir: string; prefix: string };
let serial = 0;

function createSpares(count: number): void {
  const spares: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const path = join(incomingDir, `${prefix}-${++serial}.spare`);
      closeSync(openSync(path, 'wx'));
      spares.push(path);
    }
  } catch (err: unknown) {
    post({ error: `cannot create a spool file ahead: ${String(err)}` });
  }
  if (spares.length > 0) post({ spares });
}

function unlinkAll(paths: string[]): void {
  for (const path of paths) {
    try {
      unlinkIfThere(path);
    } catch (err: unknown) {
      post({ error: `cannot delete ${path}: ${String(err)}` });
    }
  }
}

function post(message: FromThread): void {
  parentPort?.postMessage(message);
}

parentPort?.on('message', (message: ToThread) => {
  if ('spares' in message) createSpares(message.spares);
  else if ('unlink' in message) unlinkAll(message.unlink);
  else process.exit(0);
});
