// The spool is the queue: each accepted message is one file, queue/<id>.msg, the message
// followed by its envelope (message-file.ts). It is written in incoming/ and renamed into
// queue/ once complete and fsynced: the rename is the commit point, so a directory scan
// rebuilds the queue after a crash, and whatever is in incoming/ is an unfinished write.
// Nothing is acknowledged with 250 before the file and its directory entry are fsynced.
import { open, openSync, renameSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SluiceError } from '../errors.ts';
import type { SpooledEnvelope } from './envelope.ts';
import type { FileReuse } from './file-thread.ts';
import { FILE_REUSE, FileWorker } from './file-worker.ts';
import {
  closeQuietly,
  fdatasyncFd,
  fsyncPath,
  SMALL_WRITE_BYTES,
  unlinkIfThere,
  unlinkLater,
  writeAll,
  writeAllSync,
} from './files.ts';
import { GroupCommitter } from './group-commit.ts';
import { ENVELOPE, envelopeTrailer, LEGACY_BODY, MESSAGE } from './message-file.ts';

export interface SpoolOptions {
  dir: string;
  /** Off only for benchmarks that measure what durability costs. */
  fsync?: boolean;
  /** Concurrent commits share directory fsyncs (config spool.groupCommit); default on. */
  groupCommit?: boolean;
  /** Shares one committer with other writers of the queue directory; overrides groupCommit. */
  committer?: GroupCommitter;
  /** Creates files ahead and deletes removed ones on a worker thread (file-worker.ts); default on. */
  fileThread?: boolean;
  /** Told when the file thread fails (the spool then does the work itself). */
  onFileThreadError?: (message: string) => void;
  /** How delivered messages' files are kept for reuse (FILE_REUSE by default; tests shorten it). */
  fileReuse?: FileReuse;
}

export interface SpooledMessage {
  queueId: string;
  /** The message file; its first envelope.size bytes are the message. */
  bodyPath: string;
  /** The envelope as committed (size set to the bytes written). */
  envelope: SpooledEnvelope;
  /**
   * The message's bytes as written, still in memory: given with a message small enough to
   * be written in one call at commit, so that its first delivery attempt need not read the
   * file back. The buffers are never written to again.
   */
  body?: readonly Buffer[];
}

export class Spool {
  readonly dir: string;
  readonly queueDir: string;
  readonly incomingDir: string;
  /** Removed messages wait here for the file thread to delete them. */
  readonly trashDir: string;
  /** Directory fsyncs of queue/ go through it, so commits and envelope updates share them. */
  readonly committer: GroupCommitter;
  readonly #fsync: boolean;
  readonly #fileThread: boolean;
  readonly #onFileThreadError: (message: string) => void;
  readonly #fileReuse: FileReuse;
  #files: FileWorker | undefined;
  #listeners = new Set<(message: SpooledMessage) => void>();

  constructor(options: SpoolOptions) {
    this.dir = options.dir;
    this.queueDir = join(options.dir, 'queue');
    this.incomingDir = join(options.dir, 'incoming');
    this.trashDir = join(options.dir, 'trash');
    this.#fsync = options.fsync ?? true;
    this.#fileThread = options.fileThread ?? true;
    this.#onFileThreadError = options.onFileThreadError ?? (() => undefined);
    this.#fileReuse = options.fileReuse ?? FILE_REUSE;
    this.committer =
      options.committer ?? new GroupCommitter({ enabled: options.groupCommit ?? true, fsyncDir: fsyncPath });
  }

  /** Whether files and directory entries are fsynced. */
  get fsync(): boolean {
    return this.#fsync;
  }

  /**
   * Creates the directories and removes unfinished writes (incoming/) and deletions
   * (trash/). queue/ is not listed here: with a large backlog that alone would hold up the
   * start; the queue's scan (queue/queue-store.ts) removes what a crash left half done there.
   */
  async init(): Promise<void> {
    try {
      await mkdir(this.queueDir, { recursive: true });
      for (const dir of [this.incomingDir, this.trashDir]) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
      }
    } catch (err: unknown) {
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot prepare spool directory ${this.dir}`, { cause: err });
    }
    if (this.#fileThread && !this.#files)
      this.#files = new FileWorker(this.incomingDir, this.#onFileThreadError, this.#fileReuse);
  }

  /** Stops the file thread (after the deletions asked of it) and removes the files it made ahead. */
  async close(): Promise<void> {
    const files = this.#files;
    this.#files = undefined;
    await files?.close();
  }

  /** An empty file created ahead in incoming/, opened for writing, if one is ready. */
  takeSpare(): { path: string; fd: number } | undefined {
    const path = this.#files?.take();
    if (path === undefined) return undefined;
    try {
      return { path, fd: openSync(path, 'r+') };
    } catch {
      return undefined; // the writer creates its own
    }
  }

  /**
   * Takes a file out of queue/ (or incoming/): with the file thread, a synchronous
   * rename into trash/, where the thread deletes it; without, an unlink. Either way the
   * name is gone from its directory when this resolves (fsync that directory to make it
   * durable). `reuse`: the thread may empty the file a while later and write another
   * message into it (file-thread.ts); only for a file that nothing reads any more and
   * nothing will open again, such as a message whose delivery is over.
   */
  async removeFile(path: string, options: { reuse?: boolean } = {}): Promise<void> {
    const files = this.#files;
    if (!files) {
      await unlinkLater(path);
      return;
    }
    const trashed = join(this.trashDir, basename(path));
    try {
      renameSync(path, trashed);
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (options.reuse) files.reuse(trashed);
    else files.unlink(trashed);
  }

  /** The queue ids in the spool, oldest first (both layouts). */
  async list(): Promise<string[]> {
    return queueIdsOf(new Set(await readdir(this.queueDir)));
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
 * Takes one message body into the spool; commit() makes it durable, abort() removes it.
 * A message of up to SMALL_WRITE_BYTES is collected and written with its envelope in one
 * call at commit(); a larger one is written as it arrives, SMALL_WRITE_BYTES at a time
 * (files.ts), and its last piece goes with the envelope. Not a stream (one less per
 * message): write() says when to wait for drained(), and a write that failed is kept in
 * `errored` and thrown by commit().
 */
export class SpoolWriter {
  readonly queueId: string;
  bytes = 0;
  readonly #spool: Spool;
  readonly #fsync: boolean;
  readonly #tmpBody: string;
  #fd = -1;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The open (when no spare file was ready) or the write in flight, if any; never rejects. */
  #io: Promise<void> | null = null;
  #waiters: Array<() => void> = [];
  #error: Error | null = null;
  readonly #onCommitted: (message: SpooledMessage) => void;
  #settled = false;

  constructor(spool: Spool, queueId: string, fsync: boolean, onCommitted: (m: SpooledMessage) => void) {
    this.#spool = spool;
    this.queueId = queueId;
    this.#fsync = fsync;
    this.#onCommitted = onCommitted;
    // queue ids are unique, and 'wx' would refuse a clash rather than overwrite
    // a file the spool's thread created ahead, or one of its own
    const spare = spool.takeSpare();
    this.#tmpBody = spare?.path ?? join(spool.incomingDir, `${queueId}${MESSAGE}`);
    if (spare) this.#fd = spare.fd;
    else {
      this.#track(
        new Promise<void>((resolve, reject) => {
          open(this.#tmpBody, 'wx', (err, fd) => {
            if (err) return reject(err);
            this.#fd = fd;
            resolve();
          });
        }),
      );
    }
  }

  /** Why the file could not be written, once a write (or its open) failed. */
  get errored(): Error | null {
    return this.#error;
  }

  /**
   * The next piece of the message. false: a full batch waits behind a write in flight, so
   * wait for drained() before the next. After a failure, or once settled, pieces are dropped.
   */
  write(chunk: Buffer | string): boolean {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#settled || this.#error !== null) return true;
    this.bytes += buf.length;
    this.#pending.push(buf);
    this.#pendingBytes += buf.length;
    this.#writeIfDue();
    return this.#io === null || this.#pendingBytes < SMALL_WRITE_BYTES;
  }

  /** The last piece, if any. */
  end(chunk?: Buffer | string): void {
    if (chunk !== undefined) this.write(chunk);
  }

  /** Settles once no write is in flight (also when one failed: see `errored`). */
  drained(): Promise<void> {
    if (this.#io === null) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #writeIfDue(): void {
    if (this.#io !== null || this.#error !== null || this.#pendingBytes < SMALL_WRITE_BYTES) return;
    this.#track(writeAll(this.#fd, this.#takePending()));
  }

  #track(io: Promise<void>): void {
    this.#io = io.then(
      () => {
        this.#io = null;
        if (!this.#settled) this.#writeIfDue();
        if (this.#io === null) this.#wake();
      },
      (err: unknown) => {
        this.#io = null;
        this.#error ??= err instanceof Error ? err : new Error(String(err));
        this.#takePending();
        this.#wake();
      },
    );
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
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

  /** Waits for the message to be written, appends the envelope and moves the file into the queue. */
  async commit(envelope: SpooledEnvelope): Promise<SpooledMessage> {
    if (this.#settled) throw new SluiceError('SLUICE_ERR_SPOOL', `message ${this.queueId} already settled`);
    this.#settled = true;
    const bodyPath = join(this.#spool.queueDir, `${this.queueId}${MESSAGE}`);
    let committed = envelope;
    let body: Buffer[] | undefined;
    try {
      while (this.#io !== null) await this.#io;
      if (this.#error !== null) throw this.#error;
      // the spool knows how long the message is: readers stop there, before the envelope
      committed = { ...envelope, size: this.bytes };
      // all of a small message is still pending here; a large one was partly written before
      const whole = this.#pendingBytes === this.bytes;
      const pending = this.#takePending();
      if (whole) body = pending;
      writeAllSync(this.#fd, [...pending, envelopeTrailer(committed)]);
      if (this.#fsync) await fdatasyncFd(this.#fd);
      this.#close();
      renameSync(this.#tmpBody, bodyPath);
      if (this.#fsync) await this.#spool.committer.sync(this.#spool.queueDir);
    } catch (err: unknown) {
      this.#close();
      for (const path of [this.#tmpBody, bodyPath]) unlinkIfThere(path);
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot commit message ${this.queueId}`, { cause: err });
    }
    const message: SpooledMessage = {
      queueId: this.queueId,
      bodyPath,
      envelope: committed,
      ...(body ? { body } : {}),
    };
    this.#onCommitted(message);
    return message;
  }

  /** Drops a message that will not be acknowledged; nothing of it stays on disk. */
  async abort(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#takePending();
    // never close under an open or a write in flight: unlinked before the open is done, the
    // file would appear again (a loaded machine's libuv threads run it late), and a closed
    // number could be reused by another file
    while (this.#io !== null) await this.#io;
    this.#close();
    unlinkIfThere(this.#tmpBody);
  }
}

/** The queue ids in a listing of queue/, oldest first (both layouts). */
export function queueIdsOf(names: ReadonlySet<string>): string[] {
  const ids = [...names].flatMap((n) => {
    if (n.endsWith(MESSAGE)) return [n.slice(0, -MESSAGE.length)];
    const id = n.slice(0, -ENVELOPE.length);
    return n.endsWith(ENVELOPE) && names.has(`${id}${LEGACY_BODY}`) && !names.has(`${id}${MESSAGE}`)
      ? [id]
      : [];
  });
  return ids.sort();
}
