// Passwords the relay reads from mounted Secret files (Redis, the smarthost), re-read
// when the file changes, so a rotated password reaches the next connection without a
// restart. A file that cannot be read keeps the password in force and says so; the
// value itself is never logged.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DirectoryWatch } from './dir-watch.ts';

export interface SecretFile {
  path: string;
  /** The config field that names the file, for logs */
  field: string;
  /** Puts the new value in force (for the next connection). */
  apply: (value: string) => void | Promise<void>;
}

export interface SecretFilesLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const DEFAULT_DEBOUNCE_MS = 500;

export class SecretFiles {
  readonly #files: SecretFile[];
  readonly #logger: SecretFilesLogger;
  readonly #hashes = new Map<string, string>();
  #watch: DirectoryWatch | undefined;
  #pass: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(files: SecretFile[], logger: SecretFilesLogger) {
    this.#files = files;
    this.#logger = logger;
  }

  /** Starts watching; the values in force now are the files' current content. */
  static async watch(
    files: readonly SecretFile[],
    options: { logger: SecretFilesLogger; debounceMs?: number },
  ): Promise<SecretFiles> {
    const watcher = new SecretFiles([...files], options.logger);
    for (const f of files) {
      const text = await readFile(f.path, 'utf8').catch(() => undefined);
      if (text !== undefined) watcher.#hashes.set(f.path, sha256(text.trim()));
    }
    if (files.length > 0) {
      watcher.#watch = new DirectoryWatch({
        dirs: files.map((f) => dirname(resolve(f.path))),
        debounceMs: options.debounceMs ?? DEFAULT_DEBOUNCE_MS,
        onChange: () => {
          watcher.#pass = watcher.#pass.then(() => watcher.#check());
        },
        onError: (dir, err) =>
          options.logger.error(
            { event: 'secret_watch_failed', dir, err },
            'watching a secret directory failed; a changed password needs a restart',
          ),
      });
    }
    return watcher;
  }

  /** Resolves once the re-reads scheduled so far are done. */
  settled(): Promise<void> {
    return this.#pass;
  }

  close(): void {
    this.#closed = true;
    this.#watch?.close();
  }

  async #check(): Promise<void> {
    for (const f of this.#files) {
      if (this.#closed) return;
      let value: string;
      try {
        value = (await readFile(f.path, 'utf8')).trim();
      } catch (err: unknown) {
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
        this.#logger.warn(
          { event: 'secret_reload_failed', field: f.field, file: f.path, reason: code },
          `${f.field}: cannot read ${f.path}; the password in force stays`,
        );
        continue;
      }
      const hash = sha256(value);
      if (this.#hashes.get(f.path) === hash) continue;
      try {
        await f.apply(value);
      } catch (err: unknown) {
        this.#logger.error(
          { event: 'secret_reload_failed', field: f.field, file: f.path, err },
          `${f.field}: the new password could not be applied; the one in force stays`,
        );
        continue;
      }
      this.#hashes.set(f.path, hash);
      this.#logger.info(
        { event: 'secret_reloaded', field: f.field, file: f.path },
        `${f.field} changed; new connections use the new password`,
      );
    }
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
