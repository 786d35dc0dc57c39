// Several namespaces watched as one cache. An operator allowed into a few namespaces only
// (Roles there, no ClusterRole) cannot list across all of them, so it runs one informer
// per namespace; this set presents them as one informer to the controller.
import type { KubeObject } from './client.ts';
import type { Informer, InformerHandlers } from './informer.ts';

/** What the controller uses of an informer. */
export type WatchedObjects<T extends KubeObject> = Pick<
  Informer<T>,
  'on' | 'hasSynced' | 'synced' | 'list' | 'get' | 'start' | 'stop'
>;

export class InformerSet<T extends KubeObject> implements WatchedObjects<T> {
  readonly #byNamespace: Map<string, WatchedObjects<T>>;

  /** `make` builds the informer of one namespace. */
  constructor(namespaces: readonly string[], make: (namespace: string) => WatchedObjects<T>) {
    this.#byNamespace = new Map(namespaces.map((ns) => [ns, make(ns)]));
  }

  on(handlers: InformerHandlers<T>): void {
    for (const i of this.#byNamespace.values()) i.on(handlers);
  }

  hasSynced(): boolean {
    return [...this.#byNamespace.values()].every((i) => i.hasSynced());
  }

  async synced(): Promise<void> {
    await Promise.all([...this.#byNamespace.values()].map((i) => i.synced()));
  }

  list(): T[] {
    return [...this.#byNamespace.values()].flatMap((i) => i.list());
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return namespace === undefined ? undefined : this.#byNamespace.get(namespace)?.get(namespace, name);
  }

  start(): void {
    for (const i of this.#byNamespace.values()) i.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#byNamespace.values()].map((i) => i.stop()));
  }
}

/** WATCH_NAMESPACE as a list: "a,b" → ["a", "b"]; empty or unset → all namespaces. */
export function parseNamespaces(value: string | undefined): string[] {
  return [
    ...new Set(
      (value ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
  ];
}
