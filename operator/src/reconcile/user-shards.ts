// The users part of a RelayPolicy's reconcile: evaluate the SmtpUsers, find each one's
// password hash without hashing again what is unchanged, and write the users into shard
// Secrets (build/user-shards.ts), each only when its content changed.
//
// No re-hash after a restart: each shard Secret keeps, beside the users file, a
// fingerprint of each plain password (HMAC under a per-policy key); a user whose
// fingerprint matches keeps the hash in the shard. Hashing that is needed runs in the
// HashPool; users whose hash is not ready are left out of the shard until it is, except
// that a shard with only a few pending users (one password change) is held back a
// moment and written once, with the new hash.
//
// A new shard count writes a new set (the count is in the names) while the pods still
// mount the old one; the old set is deleted once the StatefulSet has rolled out.
import type { UserRecord } from '@sluice/relay/config-schema';
import type { RelayPolicy } from '../api/types.ts';
import { labels, names } from '../build/names.ts';
import {
  chooseShardCount,
  passwordFingerprint,
  SHARD_FINGERPRINTS_KEY,
  SHARD_USERS_KEY,
  shardData,
  shardIndex,
  shardName,
  userBytes,
} from '../build/user-shards.ts';
import { type EvaluatedUsers, evaluateUsers, givenHash, type UserInput } from '../build/users.ts';
import { ownedMeta } from '../build/workload.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { keyOf } from '../kube/resources.ts';
import { APPLIED_HASH_ANNOTATION, holdsDesired, withAppliedHash } from './applied-hash.ts';
import type { HashPool } from './hash-pool.ts';
import { type Lookup, type SecretObject, secretValue } from './policy-inputs.ts';

export const SHARD_COUNT_LABEL = 'sluice.dev/users-shards';
/** At most this many pending hashes: shards holding them wait (one password change is written once). */
const HOLD_PENDING = 16;
/** Shard writes in flight at once (a new set of 128 shards at cold start). */
const WRITE_CONCURRENCY = 4;
/** A placeholder hash length for users not hashed yet, so the shard count does not move while they are. */
const PENDING_HASH_BYTES = 100;

export interface ShardSet {
  count: number;
  names: string[];
}

export interface UserShardsResult {
  evaluated: EvaluatedUsers;
  set: ShardSet;
  /** Shard Secrets written */
  changed: number;
}

interface Known {
  fingerprint: string;
  hash: string;
}

export class UserShards {
  readonly #client: KubeClient;
  readonly #owned: Lookup<SecretObject>;
  readonly #pool: HashPool;
  /** policy uid → username → the hash of the password with this fingerprint */
  readonly #known = new Map<string, Map<string, Known>>();
  /** policy uid → username → the last password seen and its fingerprint (an HMAC per user per reconcile adds up) */
  readonly #fingerprints = new Map<string, Map<string, { password: string; fingerprint: string }>>();
  /** shard key → resourceVersion already read into #known */
  readonly #read = new Map<string, string>();
  /** shard key → what this process applied, on top of which cached resourceVersion */
  readonly #applied = new Map<string, { hash: string; basedOn: string }>();

  constructor(options: { client: KubeClient; owned: Lookup<SecretObject>; pool: HashPool }) {
    this.#client = options.client;
    this.#owned = options.owned;
    this.#pool = options.pool;
  }

  /** The shard Secrets of a policy in the owned-Secrets cache, by set size. */
  #liveShards(policy: RelayPolicy): SecretObject[] {
    const { namespace, uid } = policy.metadata;
    return this.#owned
      .list()
      .filter(
        (s) =>
          s.metadata.namespace === namespace &&
          s.metadata.labels?.[SHARD_COUNT_LABEL] !== undefined &&
          s.metadata.ownerReferences?.some((r) => r.uid === uid),
      );
  }

  async reconcile(
    policy: RelayPolicy,
    users: readonly UserInput[],
    handoffPassword: string,
    fingerprintKey: string,
  ): Promise<UserShardsResult> {
    const uid = policy.metadata.uid ?? policy.metadata.name;
    const policyKey = keyOf(policy.metadata.namespace, policy.metadata.name);
    const live = this.#liveShards(policy);
    let known = this.#known.get(uid);
    if (!known) {
      known = new Map();
      this.#known.set(uid, known);
    }
    this.#learn(live, known);
    let fingerprints = this.#fingerprints.get(uid);
    if (!fingerprints) {
      fingerprints = new Map();
      this.#fingerprints.set(uid, fingerprints);
    }
    const fingerprintOf = (username: string, password: string): string => {
      const seen = fingerprints.get(username);
      if (seen?.password === password) return seen.fingerprint;
      const fingerprint = passwordFingerprint(fingerprintKey, username, password);
      fingerprints.set(username, { password, fingerprint });
      return fingerprint;
    };

    const evaluated = evaluateUsers({
      users,
      handoffPassword,
      hashOf: (username, password) => {
        const given = givenHash(password);
        if (given) return { hash: given };
        const fingerprint = fingerprintOf(username, password);
        const k = known.get(username);
        if (k?.fingerprint === fingerprint) return { hash: k.hash, fingerprint };
        const hash = this.#pool.hashFor(policyKey, username, fingerprint, password);
        if (hash === undefined) return undefined;
        known.set(username, { fingerprint, hash });
        return { hash, fingerprint };
      },
    });
    if (known.size > evaluated.accepted.length * 2 + 100) {
      const accepted = new Set(evaluated.accepted);
      for (const u of known.keys()) if (!accepted.has(u)) known.delete(u);
      for (const u of fingerprints.keys()) if (!accepted.has(u)) fingerprints.delete(u);
    }

    const sizes = evaluated.records.map((r) => ({
      username: r.record.username,
      bytes: userBytes(r.record, r.fingerprint),
    }));
    const ready = new Set(sizes.map((s) => s.username));
    for (const username of evaluated.pending) {
      if (!ready.has(username)) sizes.push({ username, bytes: username.length + PENDING_HASH_BYTES + 64 });
    }
    const count = chooseShardCount(sizes, currentCount(live));
    const base = names(policy).usersSecret;
    const set: ShardSet = {
      count,
      names: Array.from({ length: count }, (_, i) => shardName(base, count, i)),
    };

    const contents = set.names.map(() => ({
      users: [] as UserRecord[],
      fingerprints: {} as Record<string, string>,
    }));
    for (const { record, fingerprint } of evaluated.records) {
      const c = contents[shardIndex(record.username, count)];
      c?.users.push(record);
      if (fingerprint && c) c.fingerprints[record.username] = fingerprint;
    }
    const held = new Set<number>();
    if (this.#pool.pending(policyKey) <= HOLD_PENDING) {
      for (const username of evaluated.pending) held.add(shardIndex(username, count));
    }

    const byName = new Map(live.map((s) => [s.metadata.name, s]));
    const writes: Array<() => Promise<boolean>> = [];
    set.names.forEach((name, i) => {
      const current = byName.get(name);
      if (held.has(i) && current) return;
      const desired = withAppliedHash(
        this.#shardSecret(policy, name, count, shardData(contents[i] ?? { users: [], fingerprints: {} })),
      );
      writes.push(() => this.#write(desired, current));
    });
    let changed = 0;
    for (let i = 0; i < writes.length; i += WRITE_CONCURRENCY) {
      const done = await Promise.all(writes.slice(i, i + WRITE_CONCURRENCY).map((w) => w()));
      changed += done.filter(Boolean).length;
    }
    return { evaluated, set, changed };
  }

  /**
   * Deletes shard Secrets of other sets (and the single users Secret of earlier versions)
   * once the pods mount the current set, i.e. the StatefulSet has rolled out.
   */
  async cleanup(policy: RelayPolicy, set: ShardSet, rolledOut: boolean): Promise<number> {
    if (!rolledOut) return 0;
    const current = new Set(set.names);
    const stale = this.#liveShards(policy)
      .map((s) => s.metadata.name)
      .filter((n) => !current.has(n));
    const legacy = this.#owned.get(policy.metadata.namespace, names(policy).usersSecret);
    if (legacy?.metadata.ownerReferences?.some((r) => r.uid === policy.metadata.uid))
      stale.push(legacy.metadata.name);
    let deleted = 0;
    for (const name of stale) {
      if (await this.#client.delete('v1', 'Secret', policy.metadata.namespace, name)) deleted++;
      this.#applied.delete(keyOf(policy.metadata.namespace, name));
      this.#read.delete(keyOf(policy.metadata.namespace, name));
    }
    return deleted;
  }

  forget(policyUid: string, policyKey: string): void {
    this.#known.delete(policyUid);
    this.#fingerprints.delete(policyUid);
    this.#pool.forget(policyKey);
  }

  /** Hashes in live shards whose fingerprints say which password they are of (read once per version). */
  #learn(live: readonly SecretObject[], known: Map<string, Known>): void {
    for (const shard of live) {
      const key = keyOf(shard.metadata.namespace, shard.metadata.name);
      const version = shard.metadata.resourceVersion ?? '';
      if (this.#read.get(key) === version) continue;
      this.#read.set(key, version);
      try {
        const file = JSON.parse(secretValue(shard, SHARD_USERS_KEY) ?? '{}') as { users?: UserRecord[] };
        const fingerprints = JSON.parse(secretValue(shard, SHARD_FINGERPRINTS_KEY) ?? '{}') as Record<
          string,
          string
        >;
        for (const u of file.users ?? []) {
          const fingerprint = fingerprints[u.username];
          // what this process computed is newer than what a shard still shows
          if (fingerprint && !known.has(u.username))
            known.set(u.username, { fingerprint, hash: u.passwordHash });
        }
      } catch {
        // an unreadable shard is rewritten; its users are hashed again
      }
    }
  }

  /** Applies a shard unless the live one (or this process's last write on top of it) holds it already. */
  async #write(desired: KubeObject, live: SecretObject | undefined): Promise<boolean> {
    const key = keyOf(desired.metadata.namespace, desired.metadata.name);
    const hash = desired.metadata.annotations?.[APPLIED_HASH_ANNOTATION] ?? '';
    // a hand edit of the data leaves the annotation as it was: compare the data too
    if (live?.metadata.annotations?.[APPLIED_HASH_ANNOTATION] === hash && holdsDesired(desired, live))
      return false;
    const mine = this.#applied.get(key);
    if (live && mine?.hash === hash && mine.basedOn === (live.metadata.resourceVersion ?? '')) return false;
    await this.#client.apply(desired);
    this.#applied.set(key, { hash, basedOn: live?.metadata.resourceVersion ?? '' });
    return true;
  }

  #shardSecret(policy: RelayPolicy, name: string, count: number, data: Record<string, string>): KubeObject {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        ...ownedMeta(policy, name),
        labels: { ...labels(policy), [SHARD_COUNT_LABEL]: String(count) },
      },
      type: 'Opaque',
      stringData: data,
    } as KubeObject;
  }
}

/** The shard count in use: that of the newest set (an older one waits for the rollout to be deleted). */
function currentCount(live: readonly SecretObject[]): number {
  let best: { created: string; count: number } | undefined;
  for (const s of live) {
    const count = Number(s.metadata.labels?.[SHARD_COUNT_LABEL]);
    if (!Number.isInteger(count) || count < 1) continue;
    const created = s.metadata.creationTimestamp ?? '';
    if (!best || created > best.created || (created === best.created && count > best.count)) {
      best = { created, count };
    }
  }
  return best?.count ?? 0;
}
