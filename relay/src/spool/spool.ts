// The spool is the queue: each accepted message is two files in queue/, the body
// (<id>.eml) and its envelope (<id>.json). The envelope is written last and is the
// commit point, so a directory scan rebuilds the queue after a crash: a body without
// an envelope is an unfinished write and is removed, as is an envelope update (.json.tmp)
// that a crash interrupted. Nothing is acknowledged with 250 before both files and the
// directory entry are fsynced.
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { SluiceError } from '../errors.ts';
import type { SpooledEnvelope } from './envelope.ts';
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

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

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

/** Streams one message body into the spool; commit() makes it durable, abort() removes it. */
export class SpoolWriter extends Writable {
  readonly queueId: string;
  bytes = 0;
  readonly #spool: Spool;
  readonly #fsync: boolean;
  readonly #tmpBody: string;
  readonly #file: WriteStream;
  readonly #onCommitted: (message: SpooledMessage) => void;
  #settled = false;

  constructor(spool: Spool, queueId: string, fsync: boolean, onCommitted: (m: SpooledMessage) => void) {
    super();
    this.#spool = spool;
    this.queueId = queueId;
    this.#fsync = fsync;
    this.#onCommitted = onCommitted;
    this.#tmpBody = join(spool.incomingDir, `${queueId}.${randomBytes(4).toString('hex')}.eml`);
    this.#file = createWriteStream(this.#tmpBody, { flags: 'wx', flush: fsync });
    this.#file.on('error', (err) => this.destroy(err));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.#file.write(chunk)) {
      callback();
    } else {
      this.#file.once('drain', () => callback());
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#file.end(callback);
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
      // flush: true on the stream fsyncs the body before it closes
      await writeFile(tmpEnvelope, JSON.stringify(envelope), { flag: 'wx', flush: this.#fsync });
      await rename(this.#tmpBody, bodyPath);
      await rename(tmpEnvelope, envelopePath);
      if (this.#fsync) await this.#spool.committer.sync(this.#spool.queueDir);
    } catch (err: unknown) {
      await rm(this.#tmpBody, { force: true });
      await rm(tmpEnvelope, { force: true });
      await rm(bodyPath, { force: true });
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot commit message ${this.queueId}`, { cause: err });
    }
    const message: SpooledMessage = { queueId: this.queueId, bodyPath, envelopePath, envelope };
    this.#onCommitted(message);
    return message;
  }

  /** Drops a message that will not be acknowledged; nothing of it stays on disk. */
  async abort(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#file.destroy();
    if (!this.destroyed) this.destroy();
    await rm(this.#tmpBody, { force: true });
  }
}
