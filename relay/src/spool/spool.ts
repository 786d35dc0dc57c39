// The spool is the queue: each accepted message is two files in queue/, the body
// (<id>.eml) and its envelope (<id>.json). The envelope is written last and is the
// commit point, so a directory scan rebuilds the queue after a crash: a body without
// an envelope is an unfinished write and is removed, as is an envelope update (.json.tmp)
// that a crash interrupted. Nothing is acknowledged with 250 before both files and the
// directory entry are fsynced.
import { closeSync, open, renameSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { SluiceError } from '../errors.ts';
import type { SpooledEnvelope } from './envelope.ts';
import {
  closeQuietly,
  fsyncFd,
  fsyncPath,
  SMALL_WRITE_BYTES,
  unlinkIfThere,
  writeAll,
  writeAllSync,
} from './files.ts';
import { GroupCommitter } from './group-commit.ts';

export interface SpoolOptions {
  dir: string;
  /** Off only for benchmarks that measure what durability costs. */
  fsync?: boolean;
  /** Concurrent commits share directory fsyncs (config spool.groupCommit); default on. */
  groupCommit?: boolean;
  /** Shares one committer with other writers of the queue directory; overrides groupCommit. */
  committer?: GroupCommitter;
}

export interface SpooledMessage {
  queueId: string;
  bodyPath: string;
  envelopePath: string;
  /** The envelope as committed. */
  envelope: SpooledEnvelope;
}

export { fsyncPath } from './files.ts';

export class Spool {
  readonly dir: string;
  readonly queueDir: string;
  readonly incomingDir: string;
  /** Directory fsyncs of queue/ go through it, so commits and envelope updates share them. */
  readonly committer: GroupCommitter;
  readonly #fsync: boolean;
  #listeners = new Set<(message: SpooledMessage) => void>();

  constructor(options: SpoolOptions) {
    this.dir = options.dir;
    this.queueDir = join(options.dir, 'queue');
    this.incomingDir = join(options.dir, 'incoming');
    this.#fsync = options.fsync ?? true;
    this.committer =
      options.committer ?? new GroupCommitter({ enabled: options.groupCommit ?? true, fsyncDir: fsyncPath });
  }

  /** Whether files and directory entries are fsynced. */
  get fsync(): boolean {
    return this.#fsync;
  }

  /** Creates the directories and removes what a crash left half written. */
  async init(): Promise<void> {
    try {
      await mkdir(this.queueDir, { recursive: true });
      await rm(this.incomingDir, { recursive: true, force: true });
      await mkdir(this.incomingDir, { recursive: true });
      const names = new Set(await readdir(this.queueDir));
      for (const name of names) {
        const unfinished =
          (name.endsWith('.eml') && !names.has(`${name.slice(0, -4)}.json`)) || name.endsWith('.json.tmp');
        if (unfinished) await rm(join(this.queueDir, name), { force: true });
      }
    } catch (err: unknown) {
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot prepare spool directory ${this.dir}`, { cause: err });
    }
  }

  /** The queue ids in the spool, oldest first. */
  async list(): Promise<string[]> {
    const names = await readdir(this.queueDir);
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .sort();
  }

  /** Called with every message once it is committed (the seam for delivery). */
  onCommitted(listener: (message: SpooledMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  createWriter(queueId: string): SpoolWriter {
    return new SpoolWriter(this, queueId, this.#fsync, (message) => {
      for (const listener of this.#listeners) listener(message);
    });
  }
}

/**
 * Streams one message body into the spool; commit() makes it durable, abort() removes it.
 * A message of up to SMALL_WRITE_BYTES is collected and written with one call at the end;
 * a larger one is written as it arrives, SMALL_WRITE_BYTES at a time (files.ts).
 */
export class SpoolWriter extends Writable {
  readonly queueId: string;
  bytes = 0;
  readonly #spool: Spool;
  readonly #fsync: boolean;
  readonly #tmpBody: string;
  #fd = -1;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The asynchronous write in flight, if any. */
  #io: Promise<void> | null = null;
  readonly #onCommitted: (message: SpooledMessage) => void;
  #settled = false;

  constructor(spool: Spool, queueId: string, fsync: boolean, onCommitted: (m: SpooledMessage) => void) {
    // not destroyed at 'finish': the file stays open until commit() or abort()
    super({ autoDestroy: false });
    this.#spool = spool;
    this.queueId = queueId;
    this.#fsync = fsync;
    this.#onCommitted = onCommitted;
    // queue ids are unique, and 'wx' would refuse a clash rather than overwrite
    this.#tmpBody = join(spool.incomingDir, `${queueId}.eml`);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.#tmpBody, 'wx', (err, fd) => {
      if (err) return callback(err);
      this.#fd = fd;
      callback();
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < SMALL_WRITE_BYTES) {
      callback();
      return;
    }
    const io = writeAll(this.#fd, this.#takePending());
    this.#io = io;
    io.then(
      () => {
        this.#io = null;
        callback();
      },
      (err: Error) => {
        this.#io = null;
        callback(err);
      },
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      writeAllSync(this.#fd, this.#takePending());
      callback();
    } catch (err: unknown) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // never close under a write in flight: the number could be reused by another file
    const io = this.#io ?? Promise.resolve();
    io.catch(() => undefined).then(() => {
      this.#close();
      callback(err);
    });
  }

  #takePending(): Buffer[] {
    const buffers = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    return buffers;
  }

  #close(): void {
    if (this.#fd === -1) return;
    closeQuietly(this.#fd);
    this.#fd = -1;
  }

  /** Waits for the body to be written, then writes the envelope and moves both into the queue. */
  async commit(envelope: SpooledEnvelope): Promise<SpooledMessage> {
    if (this.#settled) throw new SluiceError('SLUICE_ERR_SPOOL', `message ${this.queueId} already settled`);
    this.#settled = true;
    const bodyPath = join(this.#spool.queueDir, `${this.queueId}.eml`);
    const envelopePath = join(this.#spool.queueDir, `${this.queueId}.json`);
    const tmpEnvelope = `${this.#tmpBody.slice(0, -4)}.json`;
    try {
      if (!this.writableFinished) await finished(this);
      // body and envelope are flushed side by side; both before either is renamed in
      const flushed = await Promise.allSettled([
        this.#syncBody(),
        writeEnvelope(tmpEnvelope, envelope, this.#fsync),
      ]);
      for (const result of flushed) if (result.status === 'rejected') throw result.reason;
      renameSync(this.#tmpBody, bodyPath);
      renameSync(tmpEnvelope, envelopePath);
      if (this.#fsync) await this.#spool.committer.sync(this.#spool.queueDir);
    } catch (err: unknown) {
      this.#close();
      for (const path of [this.#tmpBody, tmpEnvelope, bodyPath]) unlinkIfThere(path);
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot commit message ${this.queueId}`, { cause: err });
    }
    const message: SpooledMessage = { queueId: this.queueId, bodyPath, envelopePath, envelope };
    this.#onCommitted(message);
    return message;
  }

  async #syncBody(): Promise<void> {
    try {
      if (this.#fsync) await fsyncFd(this.#fd);
    } finally {
      this.#close();
    }
  }

  /** Drops a message that will not be acknowledged; nothing of it stays on disk. */
  async abort(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#pending = [];
    if (!this.destroyed) this.destroy();
    await this.#io?.catch(() => undefined);
    this.#close();
    unlinkIfThere(this.#tmpBody);
  }
}

async function writeEnvelope(path: string, envelope: SpooledEnvelope, fsync: boolean): Promise<void> {
  const fd = await new Promise<number>((resolve, reject) =>
    open(path, 'wx', (err, fd) => (err ? reject(err) : resolve(fd))),
  );
  try {
    writeAllSync(fd, [Buffer.from(JSON.stringify(envelope))]);
    if (fsync) await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}
