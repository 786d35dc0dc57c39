// "No write when nothing changed": each object the operator applies carries a hash of
// what it asked for; the next reconcile compares the hash of the new desired object with
// the live one's and skips the request when they are equal. Comparing with the live
// object itself would not work: the API server adds defaults, status and metadata.
import { createHash } from 'node:crypto';
import type { KubeClient, KubeObject } from '../kube/client.ts';

export const APPLIED_HASH_ANNOTATION = 'sluice.dev/applied-hash';

/** JSON with object keys sorted, so equal values give equal strings. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
      );
    }
    return v;
  });
}

/** Hash of a desired object, ignoring the applied-hash annotation itself. */
export function appliedHash(obj: KubeObject): string {
  const { [APPLIED_HASH_ANNOTATION]: _own, ...annotations } = obj.metadata.annotations ?? {};
  const copy = { ...obj, metadata: { ...obj.metadata, annotations } };
  return createHash('sha256').update(stableStringify(copy)).digest('hex').slice(0, 32);
}

/** The desired object with its applied-hash annotation. */
export function withAppliedHash<T extends KubeObject>(obj: T): T {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      annotations: { ...obj.metadata.annotations, [APPLIED_HASH_ANNOTATION]: appliedHash(obj) },
    },
  };
}

/** Whether the live object differs from what `desired` (carrying its hash) asks for. */
export function needsApply(desired: KubeObject, live: KubeObject | undefined): boolean {
  const want = desired.metadata.annotations?.[APPLIED_HASH_ANNOTATION] ?? appliedHash(desired);
  return live?.metadata.annotations?.[APPLIED_HASH_ANNOTATION] !== want;
}

/**
 * Applies `desired` (server-side apply) unless the live object already carries its hash.
 * `live` may be passed when the caller has just read it; otherwise it is read here.
 */
export async function applyIfChanged<T extends KubeObject>(
  client: KubeClient,
  desired: KubeObject,
  live?: T | null,
): Promise<{ applied: boolean; object: T }> {
  const target = withAppliedHash(desired);
  const current =
    live === undefined
      ? await client.get<T>(
          target.apiVersion ?? 'v1',
          target.kind ?? '',
          target.metadata.namespace,
          target.metadata.name,
        )
      : (live ?? undefined);
  if (current && !needsApply(target, current)) return { applied: false, object: current };
  return { applied: true, object: await client.apply<T>(target) };
}
