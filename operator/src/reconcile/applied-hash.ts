// "No write when nothing changed": each object the operator applies carries a hash of
// what it asked for; the next reconcile compares the hash of the new desired object with
// the live one's and skips the request when they are equal. Comparing with the live
// object itself would not work: the API server adds defaults, status and metadata.
// A hand edit (kubectl edit, patch, scale) leaves the hash as it was, so the object's
// managed fields are read too: another field manager that wrote a field the operator
// sets means the object has drifted, and it is applied again (force takes the field back).
// A field removed by hand leaves no managed-fields trace, so the live object is also
// checked to hold every field the desired one sets (holdsDesired); reconciles run on
// every event and on the periodic resync, so any edit is put back by the next resync.
import { createHash } from 'node:crypto';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { quantityBytes } from './spool-resize.ts';

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
 * Whether every field `desired` sets is in `live` with the same value. The API server adds
 * defaults, status and metadata but never drops what was applied, so anything missing or
 * different was edited by hand, including a removed field, which managed fields do not show
 * (nobody owns a field that is gone). Lists are compared item by item; a Secret's stringData
 * is compared with its data.
 */
export function holdsDesired(desired: KubeObject, live: KubeObject): boolean {
  return contains(asStored(live, desired), live);
}

/** A Secret's `stringData` as the API server stores it in `data` (base64), added to `data`. */
export function storedSecretData(
  stringData: Readonly<Record<string, string>>,
  data: Record<string, string> = {},
): Record<string, string> {
  for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  return data;
}

function asStored(live: KubeObject, desired: KubeObject): unknown {
  const { stringData, ...rest } = desired as KubeObject & { stringData?: Record<string, string> };
  if (live.kind !== 'Secret' || !stringData) return desired;
  return { ...rest, data: storedSecretData(stringData, (rest as { data?: Record<string, string> }).data) };
}

function contains(want: unknown, have: unknown): boolean {
  if (want === undefined) return true;
  if (Array.isArray(want)) {
    return Array.isArray(have) && have.length === want.length && want.every((w, i) => contains(w, have[i]));
  }
  if (want && typeof want === 'object') {
    if (!have || typeof have !== 'object' || Array.isArray(have)) return false;
    const h = have as Record<string, unknown>;
    return Object.entries(want as Record<string, unknown>).every(([k, v]) => contains(v, h[k]));
  }
  if (want === have || String(want) === String(have)) return true;
  // quantities the API server writes in canonical form (0.5 → 500m)
  const [a, b] = [quantityBytes(String(want)), quantityBytes(String(have))];
  return !Number.isNaN(a) && a === b;
}

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  time?: string;
  fieldsV1?: Record<string, unknown>;
}

/**
 * Writes by other field managers (not to status) to fields that `desired` sets, each as
 * "manager|operation|subresource|time". Fields only others set (a label someone added,
 * the replica count an HPA owns) are theirs and no drift.
 */
export function foreignWrites(desired: KubeObject, live: KubeObject, fieldManager: string): string[] {
  const entries = (live.metadata as { managedFields?: ManagedFieldsEntry[] }).managedFields ?? [];
  const found: string[] = [];
  for (const e of entries) {
    if (e.manager === fieldManager || e.subresource === 'status' || !e.fieldsV1) continue;
    if (touches(e.fieldsV1, desired)) {
      found.push(`${e.manager ?? ''}|${e.operation ?? ''}|${e.subresource ?? ''}|${e.time ?? ''}`);
    }
  }
  return found;
}

/**
 * Whether a managed-fields set (fieldsV1: "f:name" for a map key, "k:{...}" for a list
 * item by its keys, "v:"/"i:" for a set value or a position, "." for the node itself)
 * names a field that `desired` sets. Where the shapes do not line up, it says yes.
 */
function touches(fields: Record<string, unknown>, desired: unknown): boolean {
  if (desired === undefined || desired === null) return false;
  for (const [key, value] of Object.entries(fields)) {
    if (key === '.') return true;
    const sub = (value ?? {}) as Record<string, unknown>;
    let next: unknown;
    if (key.startsWith('f:')) {
      if (typeof desired !== 'object' || Array.isArray(desired)) return true;
      next = (desired as Record<string, unknown>)[key.slice(2)];
    } else if (key.startsWith('k:')) {
      if (!Array.isArray(desired)) return true;
      next = desired.find((item) => matchesListKey(item, key.slice(2)));
    } else {
      if (Array.isArray(desired) && desired.length > 0) return true;
      continue;
    }
    if (next === undefined) continue;
    if (Object.keys(sub).length === 0 || touches(sub, next)) return true;
  }
  return false;
}

/** A list item matches a "k:" key when every key field it has is equal (absent ones are defaulted). */
function matchesListKey(item: unknown, json: string): boolean {
  if (!item || typeof item !== 'object') return false;
  let keys: Record<string, unknown>;
  try {
    keys = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return true;
  }
  const fields = item as Record<string, unknown>;
  return Object.entries(keys).every(
    ([name, v]) => fields[name] === undefined || String(fields[name]) === String(v),
  );
}

/**
 * Foreign writes already answered with an apply, by object uid: when another manager
 * shares a field with the same value (both applied it), applying again changes nothing,
 * so each write is answered once.
 */
const answered = new Set<string>();
const ANSWERED_LIMIT = 10_000;

/**
 * Applies `desired` (server-side apply) unless the live object already carries its hash
 * and nobody else has written to the fields it sets since.
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
  const uid = current?.metadata.uid ?? '';
  const drift = current
    ? foreignWrites(target, current, client.fieldManager).filter((w) => !answered.has(`${uid}|${w}`))
    : [];
  if (current && !needsApply(target, current) && drift.length === 0 && holdsDesired(target, current))
    return { applied: false, object: current };
  const object = await client.apply<T>(target);
  if (answered.size > ANSWERED_LIMIT) answered.clear();
  for (const w of drift) answered.add(`${uid}|${w}`);
  return { applied: true, object };
}
