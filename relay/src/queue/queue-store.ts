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
import { closeSync, futimesSync, lstatSync, opendirSync, openSync, renameSync } from 'node:fs';
import { lstat, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
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
import type { Spool } from '../spool/spool.ts';
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

/** Every name a message can have in queue/. */
function queueFiles(queueId: string): string[] {
  return [`${queueId}${MESSAGE}`, `${queueId}${ENVELOPE}`, `${queueId}${LEGACY_BODY}`];
}

interface Layout {
  /** The older two-file layout (<id>.eml and <id>.json). */
  legacy: boolean;
  /** An envelope written beside the message (<id>.json). */
  beside: boolean;
}

/** Errors of the moment, not of the file: a message is never quarantined for them. */
const TRANSIENT: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN', 'EINTR']);

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
  /**
   * The layout of each message delivery has in hand (read, committed or written); it is
   * forgotten while the message waits for its next attempt, and looked up on disk when
   * asked for then.
   */
  readonly #layouts = new Map<string, Layout>();

  constructor(options: QueueStoreOptions) {
    this.#spool = options.spool;
    this.#committer = options.committer;
    this.#fsync = options.fsync;
    this.#logger = options.logger;
    this.#observer = options.observer;
  }

  /** Where a message is: its first envelope.size bytes. */
  bodyPath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${this.#layout(queueId).legacy ? LEGACY_BODY : MESSAGE}`);
  }

  /** A message just committed: one file, no envelope beside it (nothing to look up). */
  noteCommitted(queueId: string): void {
    this.#layouts.set(queueId, { legacy: false, beside: false });
  }

  #layout(queueId: string): Layout {
    const known = this.#layouts.get(queueId);
    if (known) return known;
    return {
      legacy: !this.#there(`${queueId}${MESSAGE}`) && this.#there(`${queueId}${LEGACY_BODY}`),
      beside: this.#there(`${queueId}${ENVELOPE}`),
    };
  }

  #envelopePath(queueId: string): string {
    return join(this.#spool.queueDir, `${queueId}${ENVELOPE}`);
  }

  /**
   * Walks queue/ once and tells `found` of every message in it with when it is due: the
   * modification time of the envelope beside it, which update() sets to the next attempt,
   * or (never attempted, or no time kept) the message's arrival, taken from its queue id.
   * Nothing is read but the listing and one lstat per message, and the walk runs in
   * slices of at most sliceMs, yielding to the event loop between them, so a relay takes
   * mail while it goes on. Damage found on the way is quarantined (#quarantine), and what
   * a crash left half done (Spool.init() used to remove it) is removed. Envelopes are read
   * when a message is due (load()). Resolves with the number of messages found.
   */
  async scan(
    found: (queueId: string, dueAt: number | undefined) => void,
    options: { now: () => number; sliceMs?: number },
  ): Promise<number> {
    const sliceMs = options.sliceMs ?? 10;
    const queueDir = this.#spool.queueDir;
    const dir = opendirSync(queueDir, { bufferSize: 1024 });
    let messages = 0;
    try {
      for (let done = false; !done; ) {
        const damaged: Array<[string | null, string[], QuarantineReason]> = [];
        const slice: Array<[string, number | undefined]> = [];
        const until = performance.now() + sliceMs;
        // at least one entry per slice, however short
        for (let first = true; first || performance.now() < until; first = false) {
          const entry = dir.readSync();
          if (entry === null) {
            done = true;
            break;
          }
          const name = entry.name;
          if (!isQueueName(name)) {
            damaged.push([null, [name], 'unknown_entry']);
          } else if (name.endsWith(MESSAGE)) {
            const queueId = name.slice(0, -MESSAGE.length);
            if (!entry.isFile()) {
              damaged.push([queueId, queueFiles(queueId), 'unreadable']);
              continue;
            }
            messages++;
            const beside = lstatSync(join(queueDir, `${queueId}${ENVELOPE}`), { throwIfNoEntry: false });
            slice.push([queueId, beside?.isFile() ? beside.mtimeMs : undefined]);
          } else if (name.endsWith(ENVELOPE) && this.#there(`${name.slice(0, -ENVELOPE.length)}${MESSAGE}`)) {
            // the envelope beside a message: the message's own entry deals with it
          } else {
            const tmp = name.endsWith(`${ENVELOPE}.tmp`);
            if (tmp && !entry.isFile()) {
              // an update's temporary file that is no file would make every update of its message fail
              damaged.push([null, [name], 'unreadable']);
            } else if (this.#leftover(name)) {
              // an update never renamed into place, an envelope whose message was being
              // removed, a body of the older layout whose envelope never landed
              unlinkIfThere(join(queueDir, name));
            } else if (this.#legacyEnvelope(name)) {
              messages++;
              slice.push([name.slice(0, -ENVELOPE.length), undefined]); // due now
            }
          }
        }
        // oldest first within a slice (the listing's order is the directory's hash order)
        slice.sort((a, b) => (a[0] < b[0] ? -1 : 1));
        for (const [queueId, dueAt] of slice) found(queueId, dueAt);
        for (const [queueId, names, reason] of damaged) await this.#quarantine(queueId, names, reason);
        if (!done) await setImmediate();
      }
    } finally {
      dir.closeSync();
    }
    return messages;
  }

  /**
   * Whether a name in queue/ is what a crash left half done. Decided and acted on in one
   * synchronous step: no write of this store can come between (an update in flight has
   * its temporary file, and is left alone).
   */
  #leftover(name: string): boolean {
    if (name.endsWith(`${ENVELOPE}.tmp`)) return !this.#tails.has(name.slice(0, -`${ENVELOPE}.tmp`.length));
    if (name.endsWith(ENVELOPE)) {
      const id = name.slice(0, -ENVELOPE.length);
      return !this.#tails.has(id) && !this.#there(`${id}${MESSAGE}`) && !this.#there(`${id}${LEGACY_BODY}`);
    }
    if (name.endsWith(LEGACY_BODY)) {
      const id = name.slice(0, -LEGACY_BODY.length);
      return !this.#there(`${id}${ENVELOPE}`) && !this.#there(`${id}${MESSAGE}`);
    }
    return false;
  }

  /** An envelope with a body of the older layout and no message file: a message of that layout. */
  #legacyEnvelope(name: string): boolean {
    if (!name.endsWith(ENVELOPE)) return false;
    const id = name.slice(0, -ENVELOPE.length);
    return !this.#there(`${id}${MESSAGE}`) && this.#there(`${id}${LEGACY_BODY}`);
  }

  #there(name: string): boolean {
    return lstatSync(join(this.#spool.queueDir, name), { throwIfNoEntry: false }) !== undefined;
  }

  /**
   * One message's envelope to deliver from, read from disk, or undefined when it is gone
   * (delivered or removed meanwhile) or was quarantined (damage.ts).
   */
  async load(queueId: string): Promise<SpooledEnvelope | undefined> {
    const { names, regular } = this.#probe(queueId);
    if (names.size === 0) return undefined;
    return this.#load(queueId, names, regular);
  }

  /** A queued message's envelope as it is on disk, for a look (no quarantine, nothing noted). */
  async peek(queueId: string): Promise<SpooledEnvelope | undefined> {
    const { regular } = this.#probe(queueId);
    if (!regular.has(`${queueId}${MESSAGE}`) && !regular.has(`${queueId}${ENVELOPE}`)) return undefined;
    try {
      const found = await readEnvelope(this.#spool.queueDir, queueId, regular);
      const readable =
        readableEnvelope(found.envelope, queueId) ??
        (found.beside ? readableEnvelope(found.committed, queueId) : undefined);
      return readable ? { ...readable.envelope, size: found.bodyBytes } : undefined;
    } catch {
      return undefined; // gone meanwhile, or damaged: the delivery attempt deals with it
    }
  }

  /** The store forgets what it noted of a message's layout (it is read again when due). */
  forget(queueId: string): void {
    if (!this.#tails.has(queueId)) this.#layouts.delete(queueId);
  }

  /** Which of a message's names are in queue/, and which of them are regular files. */
  #probe(queueId: string): { names: Set<string>; regular: Set<string> } {
    const names = new Set<string>();
    const regular = new Set<string>();
    for (const name of queueFiles(queueId)) {
      const stats = lstatSync(join(this.#spool.queueDir, name), { throwIfNoEntry: false });
      if (stats === undefined) continue;
      names.add(name);
      if (stats.isFile()) regular.add(name);
    }
    return { names, regular };
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
      // out of file descriptors or memory says nothing of the message: tried again later
      if (TRANSIENT.has(errorCode(err) ?? '')) throw err;
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
    this.#layouts.set(queueId, { legacy: found.legacy, beside: found.beside });
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
    this.#layouts.set(queueId, { ...this.#layout(queueId), beside: false });
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
    if (queueId !== null) this.#layouts.delete(queueId);
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

  /**
   * Replaces a message's envelope atomically and durably. The file's modification time is
   * set to dueAt (the next attempt, or now), so the scan at start knows when the message is
   * due without reading it.
   */
  update(envelope: SpooledEnvelope, dueAt: number): Promise<void> {
    const queueId = envelope.queueId;
    const text = JSON.stringify(envelope);
    return this.#serial(queueId, async () => {
      const path = this.#envelopePath(queueId);
      const tmp = `${path}.tmp`;
      try {
        const fd = openSync(tmp, 'w');
        try {
          writeAllSync(fd, [Buffer.from(text)]);
          futimesSync(fd, new Date(), new Date(dueAt));
          if (this.#fsync) await fsyncFd(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(tmp, path);
        this.#layouts.set(queueId, { ...this.#layout(queueId), beside: true });
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

  /**
   * Takes a message out of the queue, durably: a delivered message must not come back
   * after a crash. `done`: its delivery is over and nothing reads its files any more,
   * so they may be reused for new messages (Spool.removeFile).
   */
  remove(queueId: string, options: { done?: boolean } = {}): Promise<void> {
    return this.#serial(queueId, async () => {
      const dir = this.#spool.queueDir;
      const { legacy, beside } = this.#layout(queueId);
      const reuse = { reuse: options.done === true };
      // the commit point first: the message file (older layout: the envelope)
      await this.#spool.removeFile(join(dir, `${queueId}${legacy ? ENVELOPE : MESSAGE}`), reuse);
      if (this.#fsync) await this.#committer.sync(dir);
      if (legacy) await this.#spool.removeFile(join(dir, `${queueId}${LEGACY_BODY}`), reuse);
      else if (beside) await this.#spool.removeFile(this.#envelopePath(queueId), reuse);
      this.#layouts.delete(queueId);
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
