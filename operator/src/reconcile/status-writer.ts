// Writes the status subresource only when it changes. The operator reads objects from
// informer caches, which lag its own writes by a moment; the writer remembers what it
// wrote on top of which resourceVersion, so a reconcile that runs before the cache has
// caught up neither writes the same status again nor restarts its transition times.
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { ResourceType } from '../kube/resources.ts';
import { stableStringify } from './applied-hash.ts';
import { statusHolds } from './conditions.ts';

export type WithStatus = KubeObject & { status?: Record<string, unknown> };

export class StatusWriter {
  readonly #client: KubeClient;
  readonly #resource: ResourceType;
  /** uid → the resourceVersion written on and the status written, as JSON: a short string, not objects, for 100,000 users */
  readonly #written = new Map<string, { basedOn: string; status: string }>();

  constructor(client: KubeClient, resource: ResourceType) {
    this.#client = client;
    this.#resource = resource;
  }

  /** The status as it stands: the live one, or what this writer wrote on top of it. */
  current(live: WithStatus): Record<string, unknown> | undefined {
    const key = live.metadata.uid ?? live.metadata.name;
    const mine = this.#written.get(key);
    if (mine && mine.basedOn === (live.metadata.resourceVersion ?? ''))
      return { ...live.status, ...(JSON.parse(mine.status) as Record<string, unknown>) };
    // the cache has caught up (a newer version): what was written is in the live status now
    if (mine) this.#written.delete(key);
    return live.status;
  }

  /** Merge-patches `status` unless the object already holds it; returns whether it wrote. */
  async write(live: WithStatus, status: Record<string, unknown>): Promise<boolean> {
    if (statusHolds(status, this.current(live))) return false;
    const { namespace, name, uid, resourceVersion } = live.metadata;
    await this.#client.patchStatus(this.#resource, namespace ?? '', name, status);
    this.#written.set(uid ?? name, {
      basedOn: resourceVersion ?? '',
      status: stableStringify(status),
    });
    return true;
  }

  /**
   * The cache holds a version of the object (an informer event): what was written on
   * another version is in it now and is dropped at once, not at the next pass (100,000
   * status writes of a cold start would otherwise be held until it ends).
   */
  seen(uid: string, resourceVersion: string | undefined): void {
    const mine = this.#written.get(uid);
    if (mine && mine.basedOn !== (resourceVersion ?? '')) this.#written.delete(uid);
  }

  /** Drops what is remembered about a deleted object. */
  forget(uid: string): void {
    this.#written.delete(uid);
  }
}
