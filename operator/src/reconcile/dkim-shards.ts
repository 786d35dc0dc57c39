// The DKIM key shards of a RelayPolicy's reconcile (build/dkim-shards.ts): writes each
// shard Secret of the current set when its keys changed, before the config that names
// them; a set of another size is deleted once the pods mount the current one.
import type { RelayPolicy } from '../api/types.ts';
import {
  chooseDkimShardCount,
  DKIM_SHARD_COUNT_LABEL,
  type DkimKeyFile,
  type DkimShardSet,
  dkimShardData,
  dkimShardSet,
} from '../build/dkim-shards.ts';
import { labels } from '../build/names.ts';
import { ownedMeta } from '../build/workload.ts';
import type { KubeObject } from '../kube/client.ts';
import type { Lookup, SecretObject } from './policy-inputs.ts';

/** The key shard Secrets of a policy in the owned-Secrets cache. */
function liveShards(policy: RelayPolicy, owned: Lookup<SecretObject>): SecretObject[] {
  const { namespace, uid } = policy.metadata;
  return owned
    .list()
    .filter(
      (s) =>
        s.metadata.namespace === namespace &&
        s.metadata.labels?.[DKIM_SHARD_COUNT_LABEL] !== undefined &&
        s.metadata.ownerReferences?.some((r) => r.uid === uid),
    );
}

/** The set size in use: that of the newest set (an older one waits for the rollout to be deleted). */
function currentCount(live: readonly SecretObject[]): number {
  let best: { created: string; count: number } | undefined;
  for (const s of live) {
    const count = Number(s.metadata.labels?.[DKIM_SHARD_COUNT_LABEL]);
    if (!Number.isInteger(count) || count < 1) continue;
    const created = s.metadata.creationTimestamp ?? '';
    if (!best || created > best.created || (created === best.created && count > best.count)) {
      best = { created, count };
    }
  }
  return best?.count ?? 0;
}

export function dkimShardSecret(
  policy: RelayPolicy,
  name: string,
  count: number,
  data: Record<string, string>,
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      ...ownedMeta(policy, name),
      labels: { ...labels(policy), [DKIM_SHARD_COUNT_LABEL]: String(count) },
    },
    type: 'Opaque',
    // the API server drops an empty map: asking for one would differ from the live object forever
    ...(Object.keys(data).length > 0 ? { data } : {}),
  } as KubeObject;
}

/**
 * Applies every shard of the set the keys call for (`apply` skips what is unchanged);
 * returns the set, which the pods are to mount.
 */
export async function writeDkimShards(
  policy: RelayPolicy,
  files: readonly DkimKeyFile[],
  owned: Lookup<SecretObject>,
  apply: (desired: KubeObject, live: SecretObject | null) => Promise<unknown>,
): Promise<DkimShardSet> {
  const live = liveShards(policy, owned);
  const count = chooseDkimShardCount(files, currentCount(live));
  const set = dkimShardSet(policy, count);
  const data = dkimShardData(files, count);
  const byName = new Map(live.map((s) => [s.metadata.name, s]));
  for (const [i, name] of set.names.entries()) {
    await apply(dkimShardSecret(policy, name, count, data[i] ?? {}), byName.get(name) ?? null);
  }
  return set;
}

/** Deletes the shards of other sets once the pods mount the current one. */
export async function cleanupDkimShards(
  policy: RelayPolicy,
  set: DkimShardSet,
  owned: Lookup<SecretObject>,
  rolledOut: boolean,
  remove: (name: string) => Promise<unknown>,
): Promise<void> {
  if (!rolledOut) return;
  const current = new Set(set.names);
  for (const s of liveShards(policy, owned)) {
    if (!current.has(s.metadata.name)) await remove(s.metadata.name);
  }
}
