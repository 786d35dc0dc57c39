// Held messages, as Postfix's `postsuper -h` keeps them: moved out of queue/ into
// <spoolDir>/hold/, where no scan or retry finds them, so a held message is never
// attempted and stays held across restarts. Release moves it back, due now.
//
// A message is its file (<id>.msg) and maybe the envelope beside it (<id>.json). Both
// move with synchronous renames one after the other, so no slice of the queue's scan can
// come between (queue-store.ts would take an envelope without its message for a crash's
// leftover). The message file always moves first; a crash between the two renames leaves
// the envelope behind, and init() moves it to where its message is before the queue is
// scanned. The older two-file layout (<id>.eml) is never held: it is only read and
// delivered as it was written.
import { lstatSync, mkdirSync, readdirSync, renameSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../errors.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import type { GroupCommitter } from '../spool/group-commit.ts';
import { ENVELOPE, MESSAGE, readEnvelope } from '../spool/message-file.ts';
import type { Spool } from '../spool/spool.ts';
import { readableEnvelope } from './damage.ts';

export interface HoldAreaOptions {
  spool: Spool;
  committer: GroupCommitter;
  fsync: boolean;
}

function there(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

export class HoldArea {
  readonly dir: string;
  readonly #spool: Spool;
  readonly #committer: GroupCommitter;
  readonly #fsync: boolean;

  constructor(options: HoldAreaOptions) {
    this.#spool = options.spool;
    this.#committer = options.committer;
    this.#fsync = options.fsync;
    this.dir = join(options.spool.dir, 'hold');
  }

  /**
   * Creates hold/ and returns the ids held there, after putting back together a message
   * whose move a crash cut in two (its envelope left in the other directory); a release
   * so completed is due now. Run before the queue's scan, which would remove an envelope
   * found without its message.
   */
  init(now: number): string[] {
    mkdirSync(this.dir, { recursive: true });
    const queueDir = this.#spool.queueDir;
    const ids: string[] = [];
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith(MESSAGE)) {
        const id = name.slice(0, -MESSAGE.length);
        ids.push(id);
        // held: its envelope may still be in queue/
        const left = join(queueDir, `${id}${ENVELOPE}`);
        if (!there(join(queueDir, `${id}${MESSAGE}`)) && there(left))
          renameSync(left, join(this.dir, `${id}${ENVELOPE}`));
      } else if (name.endsWith(ENVELOPE)) {
        const id = name.slice(0, -ENVELOPE.length);
        // released: its message is back in queue/ and the envelope follows it
        if (!there(join(this.dir, `${id}${MESSAGE}`)) && there(join(queueDir, `${id}${MESSAGE}`))) {
          renameSync(join(this.dir, name), join(queueDir, name));
          utimesSync(join(queueDir, name), new Date(now), new Date(now));
        }
      }
    }
    return ids.sort();
  }

  /** Moves a queued message into hold/, durably. */
  async hold(queueId: string): Promise<void> {
    const from = this.#spool.queueDir;
    if (!there(join(from, `${queueId}${MESSAGE}`)))
      throw new SluiceError('SLUICE_ERR_SPOOL', `message ${queueId} has no message file to hold`);
    this.#move(queueId, from, this.dir);
    await this.#sync();
  }

  /** Moves a held message back into queue/, due now (the envelope's time is the due time), durably. */
  async release(queueId: string, now: number): Promise<void> {
    this.#move(queueId, this.dir, this.#spool.queueDir);
    const envelope = join(this.#spool.queueDir, `${queueId}${ENVELOPE}`);
    if (there(envelope)) utimesSync(envelope, new Date(now), new Date(now));
    await this.#sync();
  }

  /** Deletes a held message (message file first: it is the commit point). */
  async remove(queueId: string): Promise<void> {
    await this.#spool.removeFile(join(this.dir, `${queueId}${MESSAGE}`));
    if (this.#fsync) await this.#committer.sync(this.dir);
    await this.#spool.removeFile(join(this.dir, `${queueId}${ENVELOPE}`));
  }

  /** A held message's envelope as it is on disk, or undefined (gone, or unreadable). */
  async peek(queueId: string): Promise<SpooledEnvelope | undefined> {
    try {
      const found = await readEnvelope(this.dir, queueId);
      const readable =
        readableEnvelope(found.envelope, queueId) ??
        (found.beside ? readableEnvelope(found.committed, queueId) : undefined);
      return readable ? { ...readable.envelope, size: found.bodyBytes } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Both renames in one synchronous step: the message file first (see the top of the file). */
  #move(queueId: string, from: string, to: string): void {
    renameSync(join(from, `${queueId}${MESSAGE}`), join(to, `${queueId}${MESSAGE}`));
    const envelope = join(from, `${queueId}${ENVELOPE}`);
    if (there(envelope)) renameSync(envelope, join(to, `${queueId}${ENVELOPE}`));
  }

  async #sync(): Promise<void> {
    if (!this.#fsync) return;
    await Promise.all([this.#committer.sync(this.dir), this.#committer.sync(this.#spool.queueDir)]);
  }
}
