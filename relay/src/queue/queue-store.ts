// The queue on disk after commit (layout: spool/message-file.ts). An envelope update
// after a delivery attempt writes <id>.json.tmp, flushes it and renames it over
// <id>.json, so a crash leaves the old or the new envelope, never a torn one; a failed
// write removes its .tmp, and Spool.init() removes what a crash left. Removal deletes
// the message file first (the commit point), then any envelope beside it; Spool.init()
// removes an envelope left beside no message. A message of the older two-file layout is
// removed envelope first, then body, as that layout was written.
//
// The scan at start never stops at what it cannot read (damage.ts): a message whose
// envelope beside it is damaged is delivered from the envelope inside its file; anything
// else unreadable is moved to <spoolDir>/corrupt/, logged and counted.
import { closeSync, openSync, renameSync } from 'node:fs';
import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { fsyncFd, unlinkIfThere, writeAllSync } from '../spool/files.ts';
import type { GroupCommitter } from '../spool/group-commit.ts';
import {
  ENVELOPE,
  type EnvelopeOnDisk,
  LEGACY_BODY,
  MESSAGE,
  readEnvelope,
  TrailerError,
} from '../spool/message-file.ts';
import { queueIdsOf, type Spool } from '../spool/spool.ts';
import {
  type QuarantineReason,
  type QueueDamageObserver,
  type RecoveryReason,
  readableEnvelope,
} from './damage.ts';

export interface QueueStoreOptions {
  spool: Spool;
  /** Shares directory fsyncs with the spool's commits (pass spool.committer). */
  committer: GroupCommitter;
  /** Off only for benchmarks that measure what durability costs. */
  fsync: boolean;
  logger: Logger;
  /** Told of every quarantined entry and every recovered message (metrics). */
  observer?: QueueDamageObserver;
}

/**
 * Names the queue writes: messages, envelopes beside them (and their updates in flight),
 * bodies of the older layout. Anything else found there is no mail of ours.
 */
function isQueueName(name: string): boolean {
  return [MESSAGE, ENVELOPE, `${ENVELOPE}.tmp`, LEGACY_BODY].some((ext) => name.endsWith(ext));
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export class QueueStore {
  readonly #spool: Spool;
  readonly #committer: GroupCommitter;
  readonly #fsync: boolean;
  readonly #logger: Logger;
  readonly #observer: QueueDamageObserver | undefined;
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
    this.#observer = options.observer;
  }

  /** Where a message is: its first envelope.size bytes. */
  bodyPath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${this.#legacy.has(queueId) ? LEGACY_BODY : MESSAGE}`);
  }

  #envelopePath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${ENVELOPE}`);
  }

  /**
   * Every envelope in the queue, oldest first. Never fails for one entry: what cannot be
   * delivered from is moved to <spoolDir>/corrupt/ (logged, counted), and a message whose
   * envelope beside it is damaged is delivered from the envelope inside its file.
   */
  async scan(): Promise<SpooledEnvelope[]> {
    const names = new Set<string>();
    /** The names that are regular files: the queue writes nothing else, and opening a FIFO would hang. */
    const files = new Set<string>();
    for (const entry of await readdir(this.#spool.queueDir, { withFileTypes: true })) {
      if (!isQueueName(entry.name)) {
        await this.#quarantine(null, [entry.name], 'unknown_entry');
      } else if (entry.name.endsWith(`${ENVELOPE}.tmp`)) {
        // an update's temporary file that is no file would make every update of its message fail
        if (!entry.isFile()) await this.#quarantine(null, [entry.name], 'unreadable');
      } else {
        names.add(entry.name);
        if (entry.isFile()) files.add(entry.name);
      }
    }
    const envelopes: SpooledEnvelope[] = [];
    // from the one listing: a message committed since is handed to delivery by the spool
    for (const queueId of queueIdsOf(names)) {
      const envelope = await this.#load(queueId, names, files);
      if (envelope) envelopes.push(envelope);
    }
    return envelopes;
  }

  /** One message's envelope to deliver from, or undefined (gone meanwhile, or quarantined). */
  async #load(
    queueId: string,
    names: ReadonlySet<string>,
    regular: ReadonlySet<string>,
  ): Promise<SpooledEnvelope | undefined> {
    const message = `${queueId}${MESSAGE}`;
    const beside = `${queueId}${ENVELOPE}`;
    const files = [message, beside, `${queueId}${LEGACY_BODY}`];
    // the message's own files (the older layout's envelope is one) must be files to be opened
    const own = names.has(message) ? [message] : files.slice(1);
    if (own.some((name) => names.has(name) && !regular.has(name))) {
      await this.#quarantine(queueId, files, 'unreadable');
      return undefined;
    }
    // an envelope beside the message that is no file is damaged state: never opened
    if (names.has(message) && names.has(beside) && !regular.has(beside)) await this.#setAsideState(queueId);
    let found: EnvelopeOnDisk;
    try {
      found = await this.#read(queueId, regular);
    } catch (err: unknown) {
      // removed since the listing (delivered meanwhile: its commit point, the message
      // file or in the older layout the envelope, is gone) is no damage; a name still
      // there that cannot be opened (a dangling link) is
      const commitPoint = names.has(message) ? message : beside;
      if (errorCode(err) === 'ENOENT' && !(await this.#exists(commitPoint))) return undefined;
      const reason = err instanceof TrailerError ? 'corrupt_message' : 'unreadable';
      await this.#quarantine(queueId, files, reason, err);
      return undefined;
    }
    let readable = readableEnvelope(found.envelope, queueId);
    if (readable === undefined && found.beside) {
      readable = readableEnvelope(found.committed, queueId);
      if (readable !== undefined) await this.#setAsideState(queueId);
    }
    if (readable === undefined) {
      await this.#quarantine(queueId, files, 'corrupt_envelope');
      return undefined;
    }
    if (readable.reopened.length > 0) {
      this.#recovered(queueId, 'unknown_recipient_state', { recipients: readable.reopened });
    }
    // the file says how long the message is
    return { ...readable.envelope, size: found.bodyBytes };
  }

  /** A message's current envelope (message-file.ts), noting its layout for bodyPath() and remove(). */
  async #read(queueId: string, names: ReadonlySet<string>): Promise<EnvelopeOnDisk> {
    const found = await readEnvelope(this.#spool.queueDir, queueId, names);
    if (found.legacy) this.#legacy.add(queueId);
    if (found.beside) this.#beside.add(queueId);
    return found;
  }

  #exists(name: string): Promise<boolean> {
    return lstat(join(this.#spool.queueDir, name)).then(
      () => true,
      () => false,
    );
  }

  /**
   * The envelope beside a message is damaged: it goes to corrupt/ for a look, and the
   * message is delivered from the envelope inside its file, to every recipient not known
   * to be done (some may get it twice: at least once beats lost).
   */
  async #setAsideState(queueId: string): Promise<void> {
    const name = `${queueId}${ENVELOPE}`;
    const movedTo = await this.#moveToCorrupt(name).catch((err: unknown) => {
      this.#logger.error({ event: 'queue_quarantine_failed', queueId, err }, `cannot move ${name}`);
      return undefined;
    });
    this.#beside.delete(queueId);
    this.#recovered(queueId, 'damaged_state_file', { movedTo });
  }

  #recovered(queueId: string, reason: RecoveryReason, detail: Record<string, unknown>): void {
    this.#observer?.recovered(reason);
    this.#logger.warn(
      { event: 'queue_recovered', queueId, reason, ...detail },
      reason === 'damaged_state_file'
        ? 'damaged delivery state: delivering to every recipient not known to be done'
        : 'recipients in no known state are tried again',
    );
  }

  /**
   * Moves the names (a message's files, or one stray entry) to <spoolDir>/corrupt/, and
   * says so in the log and the metrics. A move that fails leaves the entry where it is,
   * logged and counted all the same: the scan goes on either way.
   */
  async #quarantine(
    queueId: string | null,
    names: readonly string[],
    reason: QuarantineReason,
    cause?: unknown,
  ): Promise<void> {
    const moved: string[] = [];
    let failed: unknown;
    // every file of a message goes: left alone, Spool.init() would delete a part of it
    for (const name of names) {
      try {
        const to = await this.#moveToCorrupt(name);
        if (to !== undefined) moved.push(to);
      } catch (err: unknown) {
        failed ??= err;
      }
    }
    if (queueId !== null) {
      this.#legacy.delete(queueId);
      this.#beside.delete(queueId);
    }
    this.#observer?.quarantined(reason);
    const fields = {
      event: 'queue_corrupt',
      ...(queueId === null ? { entry: names[0] } : { queueId }),
      reason,
      movedTo: moved,
      ...(cause === undefined ? {} : { err: cause }),
    };
    if (failed === undefined) {
      this.#logger.error(fields, 'unreadable queue entry moved out of the queue');
    } else {
      this.#logger.error({ ...fields, moveError: failed }, 'unreadable queue entry could not be moved');
    }
  }

  /** Where the entry went, or undefined when it is not there (any more). */
  async #moveToCorrupt(name: string): Promise<string | undefined> {
    const corruptDir = join(this.#spool.dir, 'corrupt');
    await mkdir(corruptDir, { recursive: true });
    // what an earlier scan set aside under the same name is kept
    let target = join(corruptDir, name);
    for (
      let n = 1;
      await lstat(target).then(
        () => true,
        () => false,
      );
      n++
    ) {
      target = join(corruptDir, `${name}.${n}`);
    }
    try {
      await rename(join(this.#spool.queueDir, name), target);
    } catch (err: unknown) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    return target;
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
