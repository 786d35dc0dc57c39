// Persistence of envelope updates after delivery attempts. An update writes <id>.json.tmp,
// flushes it and renames it over <id>.json, so a crash leaves the old or the new envelope,
// never a torn one; a failed write removes its .tmp, and Spool.init() removes what a crash
// left. Removal deletes the envelope first (the commit point), then the body;
// Spool.init() removes a body whose envelope is gone.
import { closeSync, openSync, renameSync } from 'node:fs';
import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { fsyncFd, unlinkIfThere, unlinkLater, writeAllSync } from '../spool/files.ts';
import type { GroupCommitter } from '../spool/group-commit.ts';
import type { Spool } from '../spool/spool.ts';

export interface QueueStoreOptions {
  spool: Spool;
  /** Shares directory fsyncs with the spool's commits (pass spool.committer). */
  committer: GroupCommitter;
  /** Off only for benchmarks that measure what durability costs. */
  fsync: boolean;
  logger: Logger;
}

const ENVELOPE = '.json';

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

  constructor(options: QueueStoreOptions) {
    this.#spool = options.spool;
    this.#committer = options.committer;
    this.#fsync = options.fsync;
    this.#logger = options.logger;
  }

  /** Where a message's body is. */
  bodyPath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}.eml`);
  }

  #envelopePath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${ENVELOPE}`);
  }

  /** Every envelope in the queue, oldest first; corrupt ones are moved to <spoolDir>/corrupt/. */
  async scan(): Promise<SpooledEnvelope[]> {
    const names = (await readdir(this.#spool.queueDir)).filter((n) => n.endsWith(ENVELOPE)).sort();
    const envelopes: SpooledEnvelope[] = [];
    for (const name of names) {
      const queueId = name.slice(0, -ENVELOPE.length);
      let text: string;
      try {
        text = await readFile(join(this.#spool.queueDir, name), 'utf8');
      } catch (err: unknown) {
        // removed since the listing (delivered meanwhile): not an error
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (isEnvelope(parsed, queueId)) envelopes.push(parsed);
      else await this.#quarantine(queueId);
    }
    return envelopes;
  }

  async #quarantine(queueId: string): Promise<void> {
    const corruptDir = join(this.#spool.dir, 'corrupt');
    await mkdir(corruptDir, { recursive: true });
    // the body goes too: left alone, Spool.init() would delete it as an unfinished write
    for (const name of [`${queueId}${ENVELOPE}`, `${queueId}.eml`]) {
      await rename(join(this.#spool.queueDir, name), join(corruptDir, name)).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
    }
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

  /** Takes a message out of the queue: the envelope first (the commit point), then the body. */
  remove(queueId: string): Promise<void> {
    return this.#serial(queueId, async () => {
      const path = this.#envelopePath(queueId);
      await unlinkLater(path);
      // durable removal: a message delivered must not come back after a crash and be sent twice
      if (this.#fsync) await this.#committer.sync(this.#spool.queueDir);
      await unlinkLater(this.bodyPath(queueId));
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
