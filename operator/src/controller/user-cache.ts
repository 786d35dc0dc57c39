// What the SmtpUser and Secret informers keep of each object (their transforms).
//
// With 100,000 users the SmtpUser cache is most of the operator's memory, so each cached user holds only what the
// reconcile reads: name, namespace, uid, versions, labels (the policy's userSelector),
// owner references and deletion; the spec with its defaults (applied once, in place, not
// copied per reconcile); and the status (observedGeneration, conditions, usage), which
// the status writer compares against. Annotations, managedFields and the like go. The
// strings that repeat across users (namespace, policy name, condition reasons and
// messages, transition times) are shared rather than held once per user.
import type { SmtpUser } from '../api/types.ts';
import type { KubeObject } from '../kube/client.ts';
import { markDefaulted, withDefaultsInPlace } from '../reconcile/policy-inputs.ts';

/** Shares equal strings; forgets everything past `limit` distinct ones (a bound, not a cache that grows). */
export class StringPool {
  readonly #strings = new Map<string, string>();
  readonly #limit: number;
  constructor(limit = 50_000) {
    this.#limit = limit;
  }
  share<S extends string | undefined>(s: S): S {
    if (s === undefined) return s;
    const kept = this.#strings.get(s);
    if (kept !== undefined) return kept as S;
    if (this.#strings.size >= this.#limit) this.#strings.clear();
    this.#strings.set(s, s);
    return s;
  }
}

/**
 * Equal SmtpUser statuses as one frozen object. A cold start writes each user's Ready
 * condition, and the users written in the same second hold equal statuses (the API server
 * keeps whole seconds): 100,000 users have a few hundred distinct ones. Only statuses of
 * `observedGeneration` and `conditions` are shared (`usage` is each user's own). Frozen:
 * a cached status is read, never changed in place.
 */
export class StatusPool {
  readonly #shared = new Map<string, Record<string, unknown>>();
  readonly #limit: number;
  constructor(limit = 10_000) {
    this.#limit = limit;
  }
  share(status: Record<string, unknown>): Record<string, unknown> {
    for (const k of Object.keys(status)) if (k !== 'observedGeneration' && k !== 'conditions') return status;
    const key = JSON.stringify(status);
    const kept = this.#shared.get(key);
    if (kept) return kept;
    if (this.#shared.size >= this.#limit) this.#shared.clear();
    const conditions = status.conditions;
    if (Array.isArray(conditions)) {
      for (const c of conditions) Object.freeze(c);
      Object.freeze(conditions);
    }
    this.#shared.set(key, Object.freeze(status));
    return status;
  }
}

type Meta = SmtpUser['metadata'] & Record<string, unknown>;

/** `now` when it equals `was` (as JSON), else `was`'s own value: an unchanged part is the cached one. */
function same<V>(now: V, was: V | undefined): V {
  if (was === undefined || now === undefined) return now;
  return was === now || JSON.stringify(was) === JSON.stringify(now) ? was : now;
}

/**
 * The cached form of an SmtpUser. `previous` is the version the cache holds: a new version
 * with the same generation has the same spec (the status subresource does not move it),
 * so it takes the previous version's defaulted spec and the same strings for its name and
 * uid. Each status write brings a new version of every user; without this, each would
 * hold strings equal to the last one's but not the same, and so would every map keyed by them.
 */
export function compactSmtpUser(
  user: SmtpUser,
  pool: StringPool,
  previous?: SmtpUser,
  statuses?: StatusPool,
): SmtpUser {
  const m = user.metadata as Meta;
  const was = previous?.metadata.uid !== undefined && previous.metadata.uid === m.uid ? previous : undefined;
  const wasMeta = was?.metadata as Meta | undefined;
  const metadata = {
    name: was ? was.metadata.name : m.name,
    namespace: pool.share(m.namespace),
    ...(m.uid ? { uid: was ? was.metadata.uid : m.uid } : {}),
    ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
    ...(m.generation !== undefined ? { generation: m.generation } : {}),
    ...(m.creationTimestamp ? { creationTimestamp: pool.share(m.creationTimestamp) } : {}),
    ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    ...(m.labels ? { labels: same(m.labels, was?.metadata.labels) } : {}),
    ...(m.ownerReferences ? { ownerReferences: same(m.ownerReferences, wasMeta?.ownerReferences) } : {}),
    ...(m.finalizers ? { finalizers: same(m.finalizers, wasMeta?.finalizers) } : {}),
  } as SmtpUser['metadata'];
  const status = user.status as { conditions?: Array<Record<string, unknown>> } | undefined;
  for (const c of status?.conditions ?? []) {
    for (const k of ['type', 'status', 'reason', 'message', 'lastTransitionTime']) {
      if (typeof c[k] === 'string') c[k] = pool.share(c[k] as string);
    }
  }
  const unchanged = was && m.generation !== undefined && was.metadata.generation === m.generation;
  const spec = unchanged ? was.spec : user.spec;
  if (!unchanged) {
    if (spec?.policyRef) spec.policyRef.name = pool.share(spec.policyRef.name);
    if (spec?.passwordSecretRef?.key) spec.passwordSecretRef.key = pool.share(spec.passwordSecretRef.key);
  }
  const compact: SmtpUser = {
    apiVersion: pool.share(user.apiVersion),
    kind: pool.share(user.kind),
    metadata,
    spec,
    ...(user.status !== undefined
      ? { status: statuses && user.status ? statuses.share(user.status) : user.status }
      : {}),
  };
  if (!spec) return compact;
  return unchanged ? markDefaulted(compact) : withDefaultsInPlace(compact);
}

/**
 * What the metadata-only Secret cache keeps of each Secret: which one, at which version
 * (a change means its data is read again when a policy reads it). Nothing else.
 */
export function compactSecretMeta<T extends KubeObject>(secret: T, pool: StringPool, previous?: T): T {
  const { name, namespace, resourceVersion } = secret.metadata;
  return {
    metadata: {
      // the name the previous version's keys hold
      name: previous?.metadata.name === name ? previous.metadata.name : name,
      ...(namespace ? { namespace: pool.share(namespace) } : {}),
      ...(resourceVersion ? { resourceVersion } : {}),
    },
  } as T;
}
