// The queue on disk after commit (layout: spool/message-file.ts). An envelope update
// after a delivery attempt writes <id>.json.tmp, flushes it and renames it over
// <id>.json, so a crash leaves the old or the new envelope, never a torn one; a failed
// write removes its .tmp, and Spool.init() removes what a crash left. Removal deletes
// the message file first (the commit point), then any envelope beside it; Spool.init()
// removes an envelope left beside no message. A message of the older two-file layout is
// removed envelope first, then body, as that layout was written.
import { closeSync, openSync, renameSync } from 'node:fs';
import { mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { fsyncFd, unlinkIfThere, writeAllSync } from '../spool/files.ts';
import type { GroupCommitter } from '../spool/group-commit.ts';
import { ENVELOPE, LEGACY_BODY, MESSAGE, readEnvelope, TrailerError } from '../spool/message-file.ts';
import type { Spool } from '../spool/spool.ts';

export interface QueueStoreOptions {
  spool: Spool;
  /** Shares directory fsyncs with the spool's commits (pass spool.committer). */
  committer: GroupCommitter;
  /** Off only for benchmarks that measure what durability costs. */
  fsync: boolean;
  logger: Logger;
}

/** Enough shape to deliver from; anything else is treated as corrupt. */
function isEnvelope(value: unknown, queueId: string): value is SpooledEnvelope {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Partial<SpooledEnvelope>;
  return (
    e.version === 1 &&
    e.queueId === queueId &&
    typeof e.sender === 'string' &&
    typeof e.receivedAt === 'string' &&
    !Number.isNaN(Date.parse(e.receivedAt)) &&
    Array.isArray(e.recipients) &&
    e.recipients.every((r) => typeof r?.address === 'string' && typeof r.state === 'string')
  );
}

export class QueueStore {
  readonly #spool: Spool;
  readonly #committer: GroupCommitter;
  readonly #fsync: boolean;
  readonly #logger: Logger;
  /** The last write of each message, so writes of one message happen in call order. */
  readonly #tails = new Map<string, Promise<void>>();
  /** Messages of the older layout (<id>.eml and <id>.json), found by scan(). */
  readonly #legacy = new Set<string>();
  /** Messages with an envelope written beside them (<id>.json). */
  readonly #beside = new Set<string>();

  constructor(options: QueueStoreOptions) {
    this.#spool = options.spool;
    this.#committer = options.committer;
    this.#fsync = options.fsync;
    this.#logger = options.logger;
  }

  /** Where a message is: its first envelope.size bytes. */
  bodyPath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${this.#legacy.has(queueId) ? LEGACY_BODY : MESSAGE}`);
  }

  #envelopePath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${ENVELOPE}`);
  }

  /** Every envelope in the queue, oldest first; corrupt ones are moved to <spoolDir>/corrupt/. */
  async scan(): Promise<SpooledEnvelope[]> {
    const dir = this.#spool.queueDir;
    const names = new Set(await readdir(dir));
    const envelopes: SpooledEnvelope[] = [];
    for (const queueId of await this.#spool.list()) {
      let found: { envelope: unknown; bodyBytes: number } | undefined;
      try {
        found = await this.#read(queueId, names);
      } catch (err: unknown) {
        // removed since the listing (delivered meanwhile): not an error
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        if (!(err instanceof TrailerError)) throw err;
      }
      if (found && isEnvelope(found.envelope, queueId)) {
        // the file says how long the message is
        envelopes.push({ ...found.envelope, size: found.bodyBytes });
      } else {
        await this.#quarantine(queueId);
      }
    }
    return envelopes;
  }

  /** A message's current envelope (message-file.ts), noting its layout for bodyPath() and remove(). */
  async #read(
    queueId: string,
    names: ReadonlySet<string>,
  ): Promise<{ envelope: unknown; bodyBytes: number }> {
    const found = await readEnvelope(this.#spool.queueDir, queueId, names);
    if (found.legacy) this.#legacy.add(queueId);
    if (found.beside) this.#beside.add(queueId);
    return found;
  }

  async #quarantine(queueId: string): Promise<void> {
    const corruptDir = join(this.#spool.dir, 'corrupt');
    await mkdir(corruptDir, { recursive: true });
    // every file of the message goes: left alone, Spool.init() would delete a part of it
    for (const name of [MESSAGE, ENVELOPE, LEGACY_BODY].map((ext) => `${queueId}${ext}`)) {
      await rename(join(this.#spool.queueDir, name), join(corruptDir, name)).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
    }
    this.#legacy.delete(queueId);
    this.#beside.delete(queueId);
    this.#logger.error(
      { event: 'queue_corrupt', queueId, reason: 'corrupt_envelope', movedTo: corruptDir },
      'unreadable envelope moved out of the queue',
    );
  }

  /** Replaces a message's envelope atomically and durably. */
  update(envelope: SpooledEnvelope): Promise<void> {
    const queueId = envelope.queueId;
    const text = JSON.stringify(envelope);
    return this.#serial(queueId, async () => {
      const path = this.#envelopePath(queueId);
      const tmp = `${path}.tmp`;
      try {
        const fd = openSync(tmp, 'w');
        try {
          writeAllSync(fd, [Buffer.from(text)]);
          if (this.#fsync) await fsyncFd(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(tmp, path);
        this.#beside.add(queueId);
      } catch (err: unknown) {
        try {
          unlinkIfThere(tmp);
        } catch {
          // the write's own error is the one to report
        }
        throw err;
      }
      if (this.#fsync) await this.#committer.sync(this.#spool.queueDir);
    });
  }

  /** Takes a message out of the queue, durably: a delivered message must not come back after a crash. */
  remove(queueId: string): Promise<void> {
    return this.#serial(queueId, async () => {
      const dir = this.#spool.queueDir;
      const legacy = this.#legacy.has(queueId);
      // the commit point first: the message file (older layout: the envelope)
      await this.#spool.removeFile(join(dir, `${queueId}${legacy ? ENVELOPE : MESSAGE}`));
      if (this.#fsync) await this.#committer.sync(dir);
      if (legacy) await this.#spool.removeFile(join(dir, `${queueId}${LEGACY_BODY}`));
      else if (this.#beside.has(queueId)) await this.#spool.removeFile(this.#envelopePath(queueId));
      this.#legacy.delete(queueId);
      this.#beside.delete(queueId);
    });
  }

  #serial(queueId: string, write: () => Promise<void>): Promise<void> {
    const previous = this.#tails.get(queueId) ?? Promise.resolve();
    // a failed write is reported to its caller; the next one still runs
    const result = previous.catch(() => undefined).then(write);
    const tail = result.catch(() => undefined);
    this.#tails.set(queueId, tail);
    void tail.then(() => {
      if (this.#tails.get(queueId) === tail) this.#tails.delete(queueId);
    });
    return result;
  }
}
