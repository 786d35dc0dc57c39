// List+watch of one resource type into a local cache, with add/update/delete handlers.
// The watch is restarted from the last resourceVersion when it ends, a 410 Gone (the
// version is too old) relists, and a stall detector relists when neither an event nor a
// bookmark arrived for `stallMs`: client-node watches can stop delivering without ending.

import type { KubeConfig } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node';
import { isGone, KubeApiError, toKubeApiError } from './api-error.ts';
import { type KubeClient, type KubeObject, METADATA_OBJECT } from './client.ts';
import { collectionPath, keyOf, type ResourceType } from './resources.ts';

export interface WatchHandle {
  abort(): void;
}

/** Where an informer gets its objects from (an API server, or a test's stand-in). */
export interface ListWatch<T> {
  /**
   * Lists every object, handing each to `onItem` as its page arrives (the informer
   * compacts it then, so a list of 100,000 objects is never held whole as it came).
   */
  list(onItem: (item: T) => void): Promise<{ resourceVersion: string }>;
  /**
   * Watches from resourceVersion with bookmarks. `onDone` is called once when the watch
   * ends (with the error, if any); it is not called after abort().
   */
  watch(
    resourceVersion: string,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err?: unknown) => void,
  ): Promise<WatchHandle>;
}

export interface ListWatchScope {
  namespace?: string;
  labelSelector?: string;
  /** Names, versions and labels only (PartialObjectMetadata): to notice changes of objects whose data is read when needed */
  metadataOnly?: boolean;
  /** Objects per list page (500 unless given): fewer for large objects, so that no page is large */
  pageSize?: number;
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Without managedFields and kubectl's last-applied copy of the object: a cache of
 * 100,000 SmtpUsers keeps neither who wrote which field nor each spec twice.
 */
function slim<T extends KubeObject>(obj: T): T {
  const metadata = obj?.metadata as (KubeObject['metadata'] & { managedFields?: unknown }) | undefined;
  if (metadata?.managedFields !== undefined) delete metadata.managedFields;
  if (metadata?.annotations?.[LAST_APPLIED] !== undefined) {
    const { [LAST_APPLIED]: _copy, ...rest } = metadata.annotations;
    metadata.annotations = rest;
  }
  return obj;
}

/**
 * Of metadata, only what says which object at which version: annotations go too (a
 * Secret applied with kubectl carries its whole data in last-applied-configuration).
 */
function bare<T extends KubeObject>(obj: T): T {
  const m = obj?.metadata;
  if (!m) return obj;
  return {
    ...(obj.apiVersion ? { apiVersion: obj.apiVersion } : {}),
    ...(obj.kind ? { kind: obj.kind } : {}),
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.uid ? { uid: m.uid } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
    },
  } as T;
}

/** A KubeConfig whose requests ask for PartialObjectMetadata (client-node's Watch sets no Accept header of its own). */
function metadataOnlyConfig(kc: KubeConfig): KubeConfig {
  const proxy = Object.create(kc) as KubeConfig;
  proxy.applySecurityAuthentication = async (context) => {
    await kc.applySecurityAuthentication(context);
    context.setHeaderParam('Accept', METADATA_OBJECT);
  };
  return proxy;
}

/** List and watch through the API server (one namespace, or all when none is given). */
export function apiListWatch<T extends KubeObject>(
  client: KubeClient,
  resource: ResourceType,
  scope: ListWatchScope = {},
): ListWatch<T> {
  const watcher = new Watch(scope.metadataOnly ? metadataOnlyConfig(client.kubeConfig) : client.kubeConfig);
  const path = collectionPath(resource, scope.namespace);
  const trim = scope.metadataOnly ? bare<T> : slim<T>;
  return {
    list: async (onItem) => {
      // trimmed and handed on page by page: 100,000 objects with their managedFields are never held at once
      const listed = await client.list<T>(resource, {
        ...scope,
        onPage: (page) => {
          for (const item of page) onItem(trim(item));
        },
      });
      return { resourceVersion: listed.resourceVersion };
    },
    async watch(resourceVersion, onEvent, onDone) {
      let aborted = false;
      const controller = await watcher.watch(
        path,
        {
          resourceVersion,
          allowWatchBookmarks: true,
          labelSelector: scope.labelSelector,
          // the server ends a watch after this; spread so that replicas do not reconnect together
          timeoutSeconds: 300 + Math.floor(Math.random() * 300),
        },
        (type, object) => {
          if (!aborted) onEvent(type, trim(object as T));
        },
        (err) => {
          if (!aborted) onDone(err ?? undefined);
        },
      );
      return {
        abort() {
          aborted = true;
          controller.abort();
        },
      };
    },
  };
}

export interface InformerHandlers<T> {
  add?(object: T): void;
  update?(object: T, old: T): void;
  delete?(object: T): void;
}

export interface InformerLogger {
  warn(details: object, message: string): void;
  debug?(details: object, message: string): void;
}

export interface InformerOptions<T> {
  listWatch: ListWatch<T>;
  /** For logs, e.g. the resource's plural */
  name?: string;
  /** Relist when neither an event nor a bookmark arrived this long; default 5 min. */
  stallMs?: number;
  /** Backoff after a failed list or watch: first and longest wait; default 500 ms and 30 s. */
  backoffMs?: { initial: number; max: number };
  log?: InformerLogger;
  /**
   * Applied to every listed or watched object before it is cached (client-go's
   * TransformFunc): keeps only what the operator reads, so a cache of 100,000 objects
   * holds no more than it must. It may change the object in place. `previous` is the
   * cached version of the same object, if any: what did not change can be taken from it,
   * so that a new version (each status write brings one) shares its strings and spec.
   */
  transform?: (object: T, previous: T | undefined) => T;
}

type WatchOutcome = 'closed' | 'gone' | 'stalled';

export class Informer<T extends KubeObject> {
  readonly #lw: ListWatch<T>;
  readonly #name: string;
  readonly #stallMs: number;
  readonly #backoff: { initial: number; max: number };
  readonly #log: InformerLogger | undefined;
  readonly #transform: (object: T, previous: T | undefined) => T;
  readonly #cache = new Map<string, T>();
  readonly #handlers: InformerHandlers<T>[] = [];
  readonly #syncWaiters: Array<() => void> = [];
  #resourceVersion = '';
  #synced = false;
  #running = false;
  #loop: Promise<void> | undefined;
  #current: WatchHandle | undefined;
  #interrupt: (() => void) | undefined;
  #lastActivity = 0;
  #events = 0;
  #relists = 0;

  constructor(options: InformerOptions<T>) {
    this.#lw = options.listWatch;
    this.#name = options.name ?? 'objects';
    this.#stallMs = options.stallMs ?? 300_000;
    this.#backoff = options.backoffMs ?? { initial: 500, max: 30_000 };
    this.#log = options.log;
    this.#transform = options.transform ?? ((o) => o);
  }

  on(handlers: InformerHandlers<T>): void {
    this.#handlers.push(handlers);
  }

  /** True once the first list has filled the cache. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Full lists done so far (the first one, and every relist). */
  get relists(): number {
    return this.#relists;
  }

  /** Resolves when the first list has filled the cache. */
  synced(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(keyOf(namespace, name));
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#current?.abort();
    this.#interrupt?.();
    await this.#loop;
    this.#loop = undefined;
  }

  async #run(): Promise<void> {
    let needList = true;
    let failures = 0;
    while (this.#running) {
      try {
        if (needList) {
          await this.#relist();
          needList = false;
        }
        const started = Date.now();
        const events = this.#events;
        const outcome = await this.#watchOnce();
        if (!this.#running) break;
        if (outcome !== 'closed') {
          failures = 0;
          needList = true;
          this.#log?.warn({ informer: this.#name, outcome }, 'watch restarted with a relist');
        } else if (this.#events === events && Date.now() - started < 1000) {
          // a watch the server ends at once, again and again, must not become a busy loop
          failures++;
          await this.#pause(Math.min(this.#backoff.max, this.#backoff.initial * 2 ** (failures - 1)));
        } else {
          failures = 0;
        }
      } catch (err: unknown) {
        if (!this.#running) break;
        if (isGone(err)) {
          needList = true;
          continue;
        }
        failures++;
        const delay = Math.min(this.#backoff.max, this.#backoff.initial * 2 ** (failures - 1));
        this.#log?.warn(
          { informer: this.#name, err: toKubeApiError(err).message, retryInMs: delay },
          needList ? 'list failed' : 'watch failed',
        );
        await this.#pause(delay);
      }
    }
  }

  async #relist(): Promise<void> {
    const fresh = new Map<string, T>();
    const { resourceVersion } = await this.#lw.list((item) => {
      const key = keyOf(item.metadata.namespace, item.metadata.name);
      fresh.set(key, this.#transform(item, this.#cache.get(key)));
    });
    if (!this.#running) return;
    this.#relists++;
    const gone = [...this.#cache.entries()].filter(([key]) => !fresh.has(key));
    for (const [key, old] of gone) {
      this.#cache.delete(key);
      this.#emit((h) => h.delete?.(old));
    }
    for (const [key, item] of fresh) {
      const old = this.#cache.get(key);
      this.#cache.set(key, item);
      if (!old) this.#emit((h) => h.add?.(item));
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) {
        this.#emit((h) => h.update?.(item, old));
      }
    }
    this.#resourceVersion = resourceVersion;
    this.#lastActivity = Date.now();
    if (!this.#synced) {
      this.#synced = true;
      for (const resolve of this.#syncWaiters.splice(0)) resolve();
    }
  }

  #watchOnce(): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#interrupt = undefined;
        fn();
      };
      const end = (outcome: WatchOutcome) =>
        settle(() => {
          this.#current?.abort();
          this.#current = undefined;
          resolve(outcome);
        });
      const fail = (err: unknown) =>
        settle(() => {
          this.#current?.abort();
          this.#current = undefined;
          reject(err);
        });
      const armStallTimer = () => {
        clearTimeout(timer);
        const wait = Math.max(0, this.#lastActivity + this.#stallMs - Date.now());
        timer = setTimeout(() => {
          if (Date.now() - this.#lastActivity >= this.#stallMs) end('stalled');
          else armStallTimer();
        }, wait);
        timer.unref();
      };
      this.#interrupt = () => end('closed');
      armStallTimer();
      const onEvent = (type: string, object: unknown) => {
        if (settled) return;
        if (type === 'ERROR') {
          const status = object as { code?: number; reason?: string; message?: string };
          const err = new KubeApiError(
            status.code ?? 0,
            status.reason ?? '',
            status.message ?? 'watch error',
          );
          if (isGone(err)) end('gone');
          else fail(err);
          return;
        }
        const raw = object as T;
        if (!raw?.metadata) return;
        const key = keyOf(raw.metadata.namespace, raw.metadata.name);
        const old = this.#cache.get(key);
        const item = type === 'ADDED' || type === 'MODIFIED' ? this.#transform(raw, old) : raw;
        this.#lastActivity = Date.now();
        this.#events++;
        if (item.metadata.resourceVersion) this.#resourceVersion = item.metadata.resourceVersion;
        if (type === 'BOOKMARK') return;
        if (type === 'DELETED') {
          this.#cache.delete(key);
          this.#emit((h) => h.delete?.(old ?? item));
        } else if (type === 'ADDED' || type === 'MODIFIED') {
          this.#cache.set(key, item);
          if (old) this.#emit((h) => h.update?.(item, old));
          else this.#emit((h) => h.add?.(item));
        }
      };
      const onDone = (err?: unknown) => {
        if (err === undefined || err === null || isTimeout(err)) end('closed');
        else if (isGone(toKubeApiError(err))) end('gone');
        else fail(toKubeApiError(err));
      };
      this.#lw.watch(this.#resourceVersion, onEvent, onDone).then(
        (handle) => {
          if (settled) handle.abort();
          else this.#current = handle;
        },
        (err: unknown) => fail(toKubeApiError(err)),
      );
    });
  }

  #emit(call: (h: InformerHandlers<T>) => void): void {
    for (const h of this.#handlers) {
      try {
        call(h);
      } catch (err: unknown) {
        this.#log?.warn({ informer: this.#name, err: String(err) }, 'informer handler failed');
      }
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.#interrupt = () => {
        this.#interrupt = undefined;
        done();
      };
    });
  }
}

/** client-node ends a quiet watch after 30 s without data with a TimeoutError: a normal restart. */
function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}
