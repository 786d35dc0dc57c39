// A thin wrapper over @kubernetes/client-node: server-side apply with the operator's field
// manager, get (NotFound → undefined), list, delete (NotFound = done), status patches of
// custom resources, Events and Leases. Every write request is counted, so tests (and the
// operator's metrics) can see that steady state writes nothing.
//
// client-node resolves the paths (API discovery, cached) and authenticates; bodies go
// out as the JSON given and come back as JSON. KubernetesObjectApi's own patch/create
// would pass them through its model serializer, which silently drops every field whose
// model name differs from its JSON name (default, enum and x-kubernetes-* of a CRD
// schema, ...) and turns timestamps into Dates.
import { KubeConfig, KubernetesObjectApi, PatchStrategy } from '@kubernetes/client-node';
import { isNotFound, toKubeApiError } from './api-error.ts';
import { type RawRequest, requestJson } from './raw-request.ts';
import { apiVersionOf, collectionPath, type ResourceType } from './resources.ts';

export const FIELD_MANAGER = 'sluice-operator';

const LIST_PAGE = 500;
/** Accept headers of metadata-only lists and watches (PartialObjectMetadata) */
export const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
export const METADATA_OBJECT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

export type WriteVerb = 'apply' | 'create' | 'replace' | 'patch' | 'delete';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

/** An object as the API server sends it (plain JSON). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMetadata;
}

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** RFC 3339 with microseconds (MicroTime) */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface EventInput {
  regarding: { apiVersion: string; kind: string; name: string; namespace: string; uid?: string };
  type: 'Normal' | 'Warning';
  /** CamelCase, e.g. SecretNotFound */
  reason: string;
  note: string;
  action: string;
}

export interface KubeClientOptions {
  fieldManager?: string;
  /** Who reports Events (events.k8s.io reportingInstance), e.g. the pod name. */
  instance?: string;
  /** Called before each write request is sent, with the request's method and path. */
  onWrite?: (verb: WriteVerb, request: { method: string; path: string }) => void;
}

/** Loads a kubeconfig file, or the in-cluster service account when no path is given. */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromCluster();
  return kc;
}

/** A MicroTime string (6 fractional digits), as Lease and Event times need. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

type Action = 'create' | 'delete' | 'patch' | 'read' | 'replace';

/** client-node's path resolution (kind → resource name through cached discovery). */
class ObjectPaths extends KubernetesObjectApi {
  path(
    obj: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string } },
    action: Action,
  ) {
    return this.specUriPath(structuredClone(obj), action);
  }
}

export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #paths: ObjectPaths;
  readonly #fieldManager: string;
  readonly #instance: string;
  readonly #onWrite: KubeClientOptions['onWrite'];
  #writes = new Map<WriteVerb, number>();
  #signal: AbortSignal | undefined;
  #options: KubeClientOptions;

  constructor(kc: KubeConfig, options: KubeClientOptions = {}) {
    this.#kc = kc;
    this.#paths = kc.makeApiClient(ObjectPaths);
    this.#fieldManager = options.fieldManager ?? FIELD_MANAGER;
    this.#instance = options.instance ?? 'sluice-operator';
    this.#onWrite = options.onWrite;
    this.#options = options;
  }

  /**
   * The same client whose requests `signal` aborts, in flight or later (a term of
   * leadership: once it ends, nothing it started reaches the API server). Writes are
   * counted with this client's.
   */
  fenced(signal: AbortSignal): KubeClient {
    const child = new KubeClient(this.#kc, this.#options);
    child.#writes = this.#writes;
    child.#signal = signal;
    return child;
  }

  #req(req: RawRequest): RawRequest {
    return this.#signal ? { ...req, signal: this.#signal } : req;
  }

  get kubeConfig(): KubeConfig {
    return this.#kc;
  }

  /** The field manager of this client's server-side applies. */
  get fieldManager(): string {
    return this.#fieldManager;
  }

  /** Write requests sent so far (applies, creates, replaces, patches, deletes). */
  get writes(): number {
    let n = 0;
    for (const v of this.#writes.values()) n += v;
    return n;
  }

  writesByVerb(): Record<WriteVerb, number> {
    return {
      apply: this.#writes.get('apply') ?? 0,
      create: this.#writes.get('create') ?? 0,
      replace: this.#writes.get('replace') ?? 0,
      patch: this.#writes.get('patch') ?? 0,
      delete: this.#writes.get('delete') ?? 0,
    };
  }

  async #write<T>(verb: WriteVerb, req: RawRequest): Promise<T> {
    this.#writes.set(verb, (this.#writes.get(verb) ?? 0) + 1);
    this.#onWrite?.(verb, { method: req.method, path: req.path });
    return (await requestJson(this.#kc, this.#req(req))) as T;
  }

  async #path(obj: KubeObject, action: Action): Promise<string> {
    const { name, namespace } = obj.metadata;
    return this.#paths
      .path(
        {
          apiVersion: obj.apiVersion ?? 'v1',
          kind: obj.kind ?? '',
          metadata: { ...(name ? { name } : {}), ...(namespace ? { namespace } : {}) },
        },
        action,
      )
      .catch((err: unknown) => {
        throw toKubeApiError(err);
      });
  }

  /** Server-side apply with the operator's field manager unless another is named (force: it owns these fields). */
  async apply<T extends KubeObject>(obj: KubeObject, options: { fieldManager?: string } = {}): Promise<T> {
    return this.#write<T>('apply', {
      method: 'PATCH',
      path: await this.#path(obj, 'patch'),
      query: { fieldManager: options.fieldManager ?? this.#fieldManager, force: true },
      body: obj,
      contentType: PatchStrategy.ServerSideApply,
    });
  }

  async get<T extends KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    const path = await this.#path(
      { apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}) } },
      'read',
    );
    try {
      return (await requestJson(this.#kc, this.#req({ method: 'GET', path }))) as T;
    } catch (err: unknown) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Lists one resource type (all namespaces when none is given), in pages of 500 so that
   * 100,000 objects never come in one response. `metadataOnly` asks for
   * PartialObjectMetadata: names, versions and labels without the objects' data.
   */
  async list<T extends KubeObject>(
    resource: ResourceType,
    options: {
      namespace?: string;
      labelSelector?: string;
      metadataOnly?: boolean;
      /** Objects per page (500 unless given) */
      pageSize?: number;
      /** Takes each page as it comes (and the result holds no items): a large list is never in memory whole */
      onPage?: (items: T[]) => void;
    } = {},
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const apiVersion = apiVersionOf(resource);
    const items: T[] = [];
    let resourceVersion = '';
    let next: string | undefined;
    do {
      const body = (await requestJson(
        this.#kc,
        this.#req({
          method: 'GET',
          path: collectionPath(resource, options.namespace),
          query: {
            labelSelector: options.labelSelector,
            limit: options.pageSize ?? LIST_PAGE,
            continue: next,
          },
          ...(options.metadataOnly ? { accept: METADATA_LIST } : {}),
          timeoutMs: 60_000,
        }),
      )) as { items?: T[]; metadata?: { resourceVersion?: string; continue?: string } };
      // items of a list do not repeat apiVersion and kind
      const page = (body.items ?? []).map((item) => ({ apiVersion, kind: resource.kind, ...item }));
      if (options.onPage) options.onPage(page);
      else items.push(...page);
      // the first page's version is the snapshot every page comes from
      resourceVersion ||= body.metadata?.resourceVersion ?? '';
      next = body.metadata?.continue || undefined;
    } while (next);
    return { items, resourceVersion };
  }

  async create<T extends KubeObject>(obj: KubeObject): Promise<T> {
    return this.#write<T>('create', {
      method: 'POST',
      path: await this.#path(obj, 'create'),
      query: { fieldManager: this.#fieldManager },
      body: obj,
    });
  }

  /** Replaces an object; metadata.resourceVersion makes it fail with Conflict (409) if it changed. */
  async replace<T extends KubeObject>(obj: KubeObject): Promise<T> {
    return this.#write<T>('replace', {
      method: 'PUT',
      path: await this.#path(obj, 'replace'),
      query: { fieldManager: this.#fieldManager },
      body: obj,
    });
  }

  /**
   * Deletes an object (background cascading unless `propagationPolicy` says otherwise; with
   * `uid`, only that incarnation); returns false when it did not exist (NotFound means done).
   */
  async delete(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    options: { propagationPolicy?: 'Background' | 'Foreground' | 'Orphan'; uid?: string } = {},
  ): Promise<boolean> {
    const path = await this.#path(
      { apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}) } },
      'delete',
    );
    try {
      await this.#write('delete', {
        method: 'DELETE',
        path,
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          propagationPolicy: options.propagationPolicy ?? 'Background',
          ...(options.uid ? { preconditions: { uid: options.uid } } : {}),
        },
      });
      return true;
    } catch (err: unknown) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Merge-patches an object (a field the operator does not own by apply, e.g. a PVC's size). */
  async mergePatch<T extends KubeObject>(obj: KubeObject, patch: unknown): Promise<T> {
    return this.#write<T>('patch', {
      method: 'PATCH',
      path: await this.#path(obj, 'patch'),
      query: { fieldManager: this.#fieldManager },
      body: patch,
      contentType: PatchStrategy.MergePatch,
    });
  }

  /** Merge-patches the status subresource of a custom resource. */
  async patchStatus(resource: ResourceType, namespace: string, name: string, status: unknown): Promise<void> {
    await this.#write('patch', {
      method: 'PATCH',
      path: `${collectionPath(resource, namespace)}/${encodeURIComponent(name)}/status`,
      query: { fieldManager: this.#fieldManager },
      body: { status },
      contentType: PatchStrategy.MergePatch,
    });
  }

  /** Records an events.k8s.io/v1 Event about an object. */
  async createEvent(event: EventInput, now = Date.now()): Promise<void> {
    const { regarding } = event;
    const suffix = `${now.toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
    await this.create({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${regarding.name}.${suffix}`, namespace: regarding.namespace },
      eventTime: microTime(now),
      reportingController: 'sluice.dev/operator',
      reportingInstance: this.#instance.slice(0, 128),
      action: event.action,
      reason: event.reason,
      note: event.note.slice(0, 1000),
      type: event.type,
      regarding,
    } as KubeObject);
  }

  getLease(namespace: string, name: string): Promise<Lease | undefined> {
    return this.get<Lease>('coordination.k8s.io/v1', 'Lease', namespace, name);
  }

  /** Creates a Lease; fails with AlreadyExists (409) when another replica was first. */
  createLease(lease: Lease): Promise<Lease> {
    return this.create<Lease>({ ...lease, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' });
  }

  /** Replaces a Lease; fails with Conflict (409) when it changed since it was read. */
  replaceLease(lease: Lease): Promise<Lease> {
    return this.replace<Lease>({ ...lease, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' });
  }

  /** Whether the API server serves a group version, e.g. monitoring.coreos.com/v1. */
  /** Whether the API server's discovery lists every one of kinds in groupVersion. */
  async servesKinds(groupVersion: string, kinds: readonly string[]): Promise<boolean> {
    try {
      const list = (await requestJson(
        this.#kc,
        this.#req({ method: 'GET', path: `/apis/${groupVersion}` }),
      )) as {
        resources?: Array<{ kind?: string }>;
      };
      const served = new Set((list.resources ?? []).map((r) => r.kind));
      return kinds.every((k) => served.has(k));
    } catch (err: unknown) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async servesApi(groupVersion: string): Promise<boolean> {
    return this.servesKinds(groupVersion, []);
  }
}
