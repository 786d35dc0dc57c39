// Hot reload of the config and users files. Each file's directory is watched (see
// dir-watch.ts), any event there schedules a debounced re-read, and a content hash keeps
// identical content from being re-applied.
// The users file path is fixed at start(): a changed config.usersFile needs a restart.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { dirname, resolve } from 'node:path';
import { SluiceError } from '../errors.ts';
import { DirectoryWatch } from './dir-watch.ts';
import { readConfigFile } from './load.ts';
import { ConfigError } from './validate.ts';

interface ReloadSource<T> {
  path: string;
  /** The text whose change means a reload; the file's text by default (a users directory lists its shards). */
  read?: (path: string) => Promise<string>;
  /** The directory whose events schedule a re-read; the file's directory by default. */
  watchDir?: string;
  /**
   * What the caller already read of the file (`text` as `read` gives it, and its value):
   * start() takes it rather than reading again, so the process runs on the content it
   * was set up from. A change since then is applied by the first pass.
   */
  initial?: { text: string; value: T };
}

/**
 * One watched file: `load` reads and validates it on its own; `parse` validates the text
 * read for the change check, so that a value and its hash always come from one read.
 */
export type ReloadTarget<T> = ReloadSource<T> &
  (
    | { load: (path: string) => Promise<T>; parse?: never }
    | { parse: (text: string, path: string) => T | Promise<T>; load?: never }
  );

export type ReloadWhich = 'config' | 'users';
export type ReloadTrigger = 'watch' | 'manual';

export interface ReloaderLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ReloaderOptions<C, U> {
  config: ReloadTarget<C>;
  users: ReloadTarget<U>;
  /** Puts new values in force; if it throws, the new content is rejected (retried when it changes or on reload()). */
  apply: (config: C, users: U, changed: { config: boolean; users: boolean }) => void | Promise<void>;
  debounceMs?: number;
  logger: ReloaderLogger;
}

export type ReloaderEvents = {
  applied: [{ which: ReloadWhich }];
  rejected: [{ which: ReloadWhich; error: SluiceError }];
  /** After every reload pass, whatever its outcome (lets tests and metrics see a pass finish). */
  checked: [{ trigger: ReloadTrigger; applied: boolean }];
};

interface Slot<T> {
  readonly which: ReloadWhich;
  readonly target: ReloadTarget<T>;
  value: T;
  hash: string;
  /** Content already rejected, so that unrelated directory events do not log it again. */
  rejectedKey: string | undefined;
  /** What was wrong with it: the same content and the same problems are not logged twice. */
  rejectedWhy?: string | undefined;
  /** Valid content held back by a rejected other file, so that it is logged once. */
  heldKey?: string | undefined;
}

interface Fresh<T> {
  value: T;
  hash: string;
}

const DEFAULT_DEBOUNCE_MS = 500;
const REJECTED = Symbol('rejected');

export class Reloader<C, U> extends EventEmitter<ReloaderEvents> {
  readonly #options: ReloaderOptions<C, U>;
  readonly #debounceMs: number;
  #config: Slot<C> | undefined;
  #users: Slot<U> | undefined;
  #watch: DirectoryWatch | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #started = false;
  #closed = false;

  constructor(options: ReloaderOptions<C, U>) {
    super();
    this.#options = options;
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  }

  /** Loads both files (throwing on a bad one: the relay must not start on it), then starts watching. */
  async start(): Promise<{ config: C; users: U }> {
    if (this.#started) throw new Error('Reloader.start() called twice');
    this.#started = true;
    const config = await initialOrFresh(this.#options.config);
    const users = await initialOrFresh(this.#options.users);
    this.#config = { which: 'config', target: this.#options.config, ...config, rejectedKey: undefined };
    this.#users = { which: 'users', target: this.#options.users, ...users, rejectedKey: undefined };
    if (!this.#closed) this.#watchDirs();
    return { config: config.value, users: users.value };
  }

  /** Re-reads both files now (SIGHUP); true if something new was applied. */
  reload(): Promise<boolean> {
    return this.#enqueue('manual');
  }

  close(): void {
    this.#closed = true;
    this.#watch?.close();
  }

  #watchDirs(): void {
    this.#watch = new DirectoryWatch({
      dirs: [this.#options.config, this.#options.users].map((t) => t.watchDir ?? dirname(resolve(t.path))),
      debounceMs: this.#debounceMs,
      onChange: () => {
        if (this.#closed) return;
        this.#enqueue('watch').catch((err: unknown) => {
          this.#options.logger.error({ event: 'config_reload_failed', err }, 'config reload failed');
        });
      },
      // only SIGHUP reloads from here on; say so loudly rather than go quiet
      onError: (dir, err) =>
        this.#options.logger.error(
          { event: 'config_watch_failed', dir, err },
          'watching a config directory failed',
        ),
    });
  }

  // Passes run one at a time, so two reads never race to apply.
  #enqueue(trigger: ReloadTrigger): Promise<boolean> {
    const run = this.#queue.then(() => this.#pass(trigger));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #pass(trigger: ReloadTrigger): Promise<boolean> {
    const configSlot = this.#config;
    const usersSlot = this.#users;
    if (this.#closed || configSlot === undefined || usersSlot === undefined) return false;
    const config = await this.#check(configSlot, trigger);
    const users = await this.#check(usersSlot, trigger);
    let applied = false;
    if (config === REJECTED || users === REJECTED) {
      // All or nothing: a valid change to the other file waits until both files are valid.
      this.#hold(configSlot, config);
      this.#hold(usersSlot, users);
    } else if (config !== undefined || users !== undefined) {
      applied = await this.#apply(configSlot, config, usersSlot, users, trigger);
    }
    this.emit('checked', { trigger, applied });
    return applied;
  }

  /**
   * New valid content of one file; undefined when it is unchanged; REJECTED when it cannot
   * be read, parsed or validated (the whole pass then applies nothing).
   */
  async #check<T>(slot: Slot<T>, trigger: ReloadTrigger): Promise<Fresh<T> | typeof REJECTED | undefined> {
    const { path } = slot.target;
    let key: string | undefined;
    try {
      const text = await (slot.target.read ?? readConfigFile)(path);
      key = sha256(text);
      if (key === slot.hash) {
        slot.rejectedKey = slot.rejectedWhy = undefined;
        return undefined;
      }
      // content rejected before is loaded again: what it names (a key file beside it, say)
      // may have arrived since, as a volume's files do not all change at once
      return { value: await targetValue(slot.target, text), hash: key };
    } catch (err: unknown) {
      this.#reject(slot, key ?? 'unreadable', asSluiceError(err, path), 'warn', trigger);
      return REJECTED;
    }
  }

  /** A valid change that is not applied because the other file was rejected in the same pass. */
  #hold<T>(slot: Slot<T>, fresh: Fresh<T> | typeof REJECTED | undefined): void {
    if (fresh === undefined || fresh === REJECTED || fresh.hash === slot.heldKey) return;
    slot.heldKey = fresh.hash;
    this.#options.logger.warn(
      { event: 'config_held', which: slot.which, file: slot.target.path },
      `${slot.which} file is valid but waits: the other file was rejected, and the two apply together`,
    );
  }

  async #apply(
    configSlot: Slot<C>,
    config: Fresh<C> | undefined,
    usersSlot: Slot<U>,
    users: Fresh<U> | undefined,
    trigger: ReloadTrigger,
  ): Promise<boolean> {
    if (this.#closed) return false;
    const changed = { config: config !== undefined, users: users !== undefined };
    try {
      await this.#options.apply(config?.value ?? configSlot.value, users?.value ?? usersSlot.value, changed);
    } catch (err: unknown) {
      this.#refuse(configSlot, config, err, trigger);
      this.#refuse(usersSlot, users, err, trigger);
      return false;
    }
    this.#commit(configSlot, config);
    this.#commit(usersSlot, users);
    return true;
  }

  #commit<T>(slot: Slot<T>, fresh: Fresh<T> | undefined): void {
    if (fresh === undefined) return;
    slot.value = fresh.value;
    slot.hash = fresh.hash;
    slot.rejectedKey = undefined;
    slot.rejectedWhy = undefined;
    slot.heldKey = undefined;
    this.#options.logger.info(
      { event: 'config_applied', which: slot.which, file: slot.target.path },
      `${slot.which} file applied`,
    );
    this.emit('applied', { which: slot.which });
  }

  /** apply() threw: the new content is rejected like an invalid file (tried again on the next event). */
  #refuse<T>(slot: Slot<T>, fresh: Fresh<T> | undefined, err: unknown, trigger: ReloadTrigger): void {
    if (fresh === undefined) return;
    this.#reject(
      slot,
      fresh.hash,
      asSluiceError(err, slot.target.path, 'could not be applied: '),
      'error',
      trigger,
    );
  }

  /** Logs and emits a rejection, once per content and problems unless asked (SIGHUP). */
  #reject<T>(
    slot: Slot<T>,
    key: string,
    error: SluiceError,
    level: 'warn' | 'error',
    trigger: ReloadTrigger,
  ): void {
    const problems = error instanceof ConfigError ? error.problems : [error.message];
    const why = `${key}\n${problems.join('\n')}`;
    const again = key === slot.rejectedKey && why === slot.rejectedWhy;
    slot.rejectedKey = key;
    slot.rejectedWhy = why;
    if (again && trigger === 'watch') return;
    this.#options.logger[level](
      { event: 'config_rejected', which: slot.which, file: slot.target.path, code: error.code, problems },
      `${slot.which} file rejected; the previous config and users files stay in force`,
    );
    this.emit('rejected', { which: slot.which, error });
  }
}

async function initialOrFresh<T>(target: ReloadTarget<T>): Promise<Fresh<T>> {
  if (target.initial) return { value: target.initial.value, hash: sha256(target.initial.text) };
  const text = await (target.read ?? readConfigFile)(target.path);
  return { value: await targetValue(target, text), hash: sha256(text) };
}

function targetValue<T>(target: ReloadTarget<T>, text: string): T | Promise<T> {
  return target.parse ? target.parse(text, target.path) : target.load(target.path);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function asSluiceError(err: unknown, path: string, prefix = ''): SluiceError {
  if (err instanceof SluiceError && prefix === '') return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof SluiceError ? err.code : 'SLUICE_ERR_CONFIG_INVALID';
  return new ConfigError(code, path, [`${path}: ${prefix}${message}`], { cause: err });
}
