// The data of the Secrets the policies read (user passwords, TLS, Redis and smarthost
// credentials), and of no others. Which Secrets exist and at which version comes from a
// metadata-only watch (no data of any Secret travels or stays in memory for it); the
// data of a referenced Secret is read when it is first needed or its version changed:
// one GET each, or one paged list of the namespace when many are missing at once (an
// operator start with 100,000 users reads one list, not 100,000 objects).
import { NOT_MANAGED_SELECTOR } from '../build/names.ts';
import type { KubeClient } from '../kube/client.ts';
import { keyOf, SECRETS, splitKey } from '../kube/resources.ts';
import type { Lookup, SecretObject } from '../reconcile/policy-inputs.ts';

/** Above this many Secrets to read in one namespace, a paged list of the namespace is cheaper. */
const LIST_ABOVE = 64;
const GET_CONCURRENCY = 8;
/** The usual Secret types, one string each instead of one per Secret */
const TYPES = new Map(
  ['Opaque', 'kubernetes.io/tls', 'kubernetes.io/basic-auth'].map((t) => [t, t] as const),
);

export class ReferencedSecrets implements Lookup<SecretObject> {
  readonly #client: KubeClient;
  /** The metadata-only cache: which Secrets exist, at which resourceVersion */
  readonly #meta: Lookup<SecretObject>;
  readonly #data = new Map<string, SecretObject>();
  #reads = 0;

  constructor(options: { client: KubeClient; meta: Lookup<SecretObject> }) {
    this.#client = options.client;
    this.#meta = options.meta;
  }

  /** Secret reads so far (GETs and list pages), for tests and the bench. */
  get reads(): number {
    return this.#reads;
  }

  get(namespace: string, name: string): SecretObject | undefined {
    return this.#data.get(keyOf(namespace, name));
  }

  list(): SecretObject[] {
    return [...this.#data.values()];
  }

  /** Drops a Secret no longer referenced, or deleted. */
  drop(key: string): void {
    this.#data.delete(key);
  }

  /** Reads the data of every Secret in `keys` that exists and is not held at its current version. */
  async ensure(keys: Iterable<string>): Promise<void> {
    // namespace → name → key (the caller's string, kept as this cache's key rather than a new one)
    const stale = new Map<string, Map<string, string>>();
    for (const key of keys) {
      const { namespace, name } = splitKey(key);
      const meta = this.#meta.get(namespace, name);
      if (!meta) {
        this.#data.delete(key);
        continue;
      }
      if (this.#data.get(key)?.metadata.resourceVersion === meta.metadata.resourceVersion) continue;
      let names = stale.get(namespace);
      if (!names) {
        names = new Map();
        stale.set(namespace, names);
      }
      names.set(name, key);
    }
    for (const [namespace, names] of stale) {
      if (names.size > LIST_ABOVE) await this.#listNamespace(namespace, names);
      else await this.#getEach(namespace, names);
    }
  }

  async #listNamespace(namespace: string, wanted: ReadonlyMap<string, string>): Promise<void> {
    let found = 0;
    await this.#client.list<SecretObject>(SECRETS, {
      namespace,
      // not the operator's own Secrets: the users shards (up to 768 KiB each) are no
      // policy's input, and a restart would read every one of them again here
      labelSelector: NOT_MANAGED_SELECTOR,
      onPage: (items) => {
        this.#reads++;
        for (const s of items) {
          const key = wanted.get(s.metadata.name);
          if (key === undefined) continue;
          this.#keep(key, s);
          found++;
        }
      },
    });
    if (found === wanted.size) return;
    // a referenced Secret that carries the operator's label after all, or came since the list
    const missed = new Map<string, string>();
    for (const [name, key] of wanted) {
      const held = this.#data.get(key)?.metadata.resourceVersion;
      if (held === undefined || held !== this.#meta.get(namespace, name)?.metadata.resourceVersion)
        missed.set(name, key);
    }
    await this.#getEach(namespace, missed);
  }

  async #getEach(namespace: string, names: ReadonlyMap<string, string>): Promise<void> {
    const wanted = [...names];
    for (let i = 0; i < wanted.length; i += GET_CONCURRENCY) {
      await Promise.all(
        wanted.slice(i, i + GET_CONCURRENCY).map(async ([name, key]) => {
          this.#reads++;
          const s = await this.#client.get<SecretObject>('v1', 'Secret', namespace, name);
          if (s) this.#keep(key, s);
          else this.#data.delete(key);
        }),
      );
    }
  }

  /**
   * Keeps what the reconcile reads: name, version, type and data (100,000 of them: nothing
   * more). The metadata is the metadata cache's object when that holds the same version.
   */
  #keep(key: string, s: SecretObject): void {
    const { namespace, name, resourceVersion } = s.metadata;
    const known = this.#meta.get(namespace ?? '', name)?.metadata;
    const metadata =
      known && known.resourceVersion === resourceVersion
        ? known
        : {
            name,
            ...(namespace ? { namespace } : {}),
            ...(resourceVersion ? { resourceVersion } : {}),
          };
    this.#data.set(key, {
      metadata,
      ...(s.type ? { type: TYPES.get(s.type) ?? s.type } : {}),
      ...(s.data ? { data: s.data } : {}),
    });
  }
}
