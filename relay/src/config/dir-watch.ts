// Watching mounted files for change. Kubernetes updates a mounted ConfigMap or Secret by
// swapping a `..data` symlink, after which a watch on the file itself never fires again;
// so the file's directory is watched, and any event there schedules one debounced call.
// The config reloader and the secret files (Redis, smarthost passwords) share this.
import { type FSWatcher, watch } from 'node:fs';

export interface DirectoryWatchOptions {
  dirs: Iterable<string>;
  /** Called once events have settled for debounceMs. */
  onChange: () => void;
  debounceMs: number;
  /** A directory can no longer be watched (only a restart or SIGHUP re-reads it then). */
  onError: (dir: string, err: unknown) => void;
}

export class DirectoryWatch {
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #o: DirectoryWatchOptions;

  constructor(options: DirectoryWatchOptions) {
    this.#o = options;
    for (const dir of new Set(options.dirs)) {
      const watcher = watch(dir, () => this.#schedule());
      watcher.on('error', (err: unknown) => options.onError(dir, err));
      this.#watchers.push(watcher);
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#o.onChange(), this.#o.debounceMs);
  }
}
