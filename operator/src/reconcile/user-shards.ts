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
import { createHash } from 'node:crypto';
import type { UserRecord } from '@sluice/relay/config-schema';
import type { RelayPolicy } from '../api/types.ts';
import { labels, names } from '../build/names.ts';
import {
  chooseShardCount,
  passwordFingerprint,
  SHARD_FINGERPRINTS_KEY,
  SHARD_USERS_KEY,
  shardData,
  shardName,
  shardOf,
  userBytes,
  usernameBits,
} from '../build/user-shards.ts';
import { type EvaluatedUsers, evaluateUsers, givenHash, type UserInput } from '../build/users.ts';
import { ownedMeta } from '../build/workload.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { keyOf } from '../kube/resources.ts';
import { APPLIED_HASH_ANNOTATION, holdsDesired, storedSecretData, withAppliedHash } from './applied-hash.ts';
import type { HashPool } from './hash-pool.ts';
import { type Lookup, type SecretObject, secretValue } from './policy-inputs.ts';

export const SHARD_COUNT_LABEL = 'sluice.dev/users-shards';

/**
 * What the owned-Secrets cache keeps of a shard Secret instead of its data (with 100,000
 * users the shards' data would be the largest thing the operator holds): a digest of the
 * data, to tell whether the live shard holds what is desired, and the hash of each user
 * whose plain password has a fingerprint, to reuse after a restart.
 */
export interface ShardDigest {
  digest: string;
  learned: ReadonlyArray<readonly [username: string, fingerprint: string, hash: string]>;
}

export type CachedShard = SecretObject & { shard?: ShardDigest };

function dataDigest(data: Readonly<Record<string, string>> | undefined): string {
  const h = createHash('sha256');
  for (const key of [SHARD_USERS_KEY, SHARD_FINGERPRINTS_KEY]) h.update(data?.[key] ?? '').update('\0');
  return h.digest('base64url');
}

/** The owned-Secrets cache's transform: shard Secrets lose their data for a ShardDigest; others pass. */
export function compactShardSecret(secret: SecretObject): CachedShard {
  if (secret.metadata.labels?.[SHARD_COUNT_LABEL] === undefined || !secret.data) return secret;
  const learned: Array<readonly [string, string, string]> = [];
  try {
    const fingerprints = JSON.parse(secretValue(secret, SHARD_FINGERPRINTS_KEY) ?? '{}') as Record<
      string,
      string
    >;
    if (Object.keys(fingerprints).length > 0) {
      const file = JSON.parse(secretValue(secret, SHARD_USERS_KEY) ?? '{}') as { users?: UserRecord[] };
      for (const u of file.users ?? []) {
        const fingerprint = fingerprints[u.username];
        if (fingerprint) learned.push([u.username, fingerprint, u.passwordHash]);
      }
    }
  } catch {
    // an unreadable shard is rewritten; its users are hashed again
  }
  const { data, ...rest } = secret;
  return { ...rest, shard: { digest: dataDigest(data), learned } };
}
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
  /** What became of each user; not the records, which a long status pass would keep alive for nothing */
  outcomes: EvaluatedUsers['outcomes'];
  set: ShardSet;
  /** Shard Secrets written */
  changed: number;
}

/**
 * One user as placed in a shard: its record, fingerprint, size and where it goes
 * (usernameBits), the same object while they stay the same.
 */
interface Placed {
  record: UserRecord;
  fingerprint?: string;
  bytes: number;
  bits: number;
}

function sameList(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function sameRecord(was: Placed, now: { record: UserRecord; fingerprint?: string }): boolean {
  const a = was.record;
  const b = now.record;
  return (
    a.passwordHash === b.passwordHash &&
    was.fingerprint === now.fingerprint &&
    a.suspended === b.suspended &&
    sameList(a.allowedSenders, b.allowedSenders) &&
    sameList(a.rateLimits, b.rateLimits)
  );
}

function sameEntries(a: readonly Placed[], b: readonly Placed[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function versionOf(obj: KubeObject | undefined): { version?: string } {
  const v = obj?.metadata.resourceVersion;
  return v ? { version: v } : {};
}

interface Known {
  fingerprint: string;
  hash: string;
}

export class UserShards {
  readonly #client: KubeClient;
  readonly #owned: Lookup<CachedShard>;
  readonly #pool: HashPool;
  /** policy uid → username → the hash of the password with this fingerprint */
  readonly #known = new Map<string, Map<string, Known>>();
  /** policy uid → username → the last password seen and its fingerprint (an HMAC per user per reconcile adds up) */
  readonly #fingerprints = new Map<string, Map<string, { password: string; fingerprint: string }>>();
  /** shard key → resourceVersion already read into #known */
  readonly #read = new Map<string, string>();
  /** policy uid → username → the user's record as last placed in a shard */
  readonly #placed = new Map<string, Map<string, Placed>>();
  /** shard key → its users when it was last rendered, and a resourceVersion known to hold them */
  readonly #rendered = new Map<string, { entries: readonly Placed[]; version: string }>();
  /** shard key → what this process applied, on top of which cached resourceVersion */
  readonly #applied = new Map<string, { hash: string; basedOn: string }>();

  #renders = 0;

  constructor(options: { client: KubeClient; owned: Lookup<CachedShard>; pool: HashPool }) {
    this.#client = options.client;
    this.#owned = options.owned;
    this.#pool = options.pool;
  }

  /** Shards rendered so far (users file built, hashed and compared with the live Secret), for tests and the bench. */
  get renders(): number {
    return this.#renders;
  }

  /** The shard Secrets of a policy in the owned-Secrets cache, by set size. */
  #liveShards(policy: RelayPolicy): CachedShard[] {
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

    let placed = this.#placed.get(uid);
    if (!placed) {
      placed = new Map();
      this.#placed.set(uid, placed);
    }
    // a value equal to the hash already placed for the user is that hash: not parsed again
    const knownHash = (username: string, value: string) =>
      placed.get(username)?.record.passwordHash === value;
    const evaluated = evaluateUsers({
      users,
      handoffPassword,
      knownHash,
      hashOf: (username, password) => {
        if (knownHash(username, password)) return { hash: password };
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

    // each user's record, kept while it stays the same: a shard whose users are all the
    // same records as when it was last checked is not rendered again (one user change
    // renders one shard, not 100,000 users)
    const entries = evaluated.records.map((r) => {
      const was = placed.get(r.record.username);
      if (was && sameRecord(was, r)) return was;
      const entry: Placed = {
        record: r.record,
        ...(r.fingerprint ? { fingerprint: r.fingerprint } : {}),
        bytes: userBytes(r.record, r.fingerprint),
        bits: was ? was.bits : usernameBits(r.record.username),
      };
      placed.set(r.record.username, entry);
      return entry;
    });
    if (placed.size > entries.length * 2 + 100) {
      const kept = new Set(entries.map((e) => e.record.username));
      for (const u of placed.keys()) if (!kept.has(u)) placed.delete(u);
    }

    // a user is either placed or pending (evaluateUsers), never both
    const pending = evaluated.pending.map((username) => ({
      bits: usernameBits(username),
      bytes: username.length + PENDING_HASH_BYTES + 64,
    }));
    const count = chooseShardCount(
      pending.length > 0 ? [...entries, ...pending] : entries,
      currentCount(live),
    );
    const base = names(policy).usersSecret;
    const set: ShardSet = {
      count,
      names: Array.from({ length: count }, (_, i) => shardName(base, count, i)),
    };

    const contents = set.names.map(() => [] as Placed[]);
    for (const e of entries) contents[shardOf(e.bits, count)]?.push(e);
    const held = new Set<number>();
    if (this.#pool.pending(policyKey) <= HOLD_PENDING) {
      for (const p of pending) held.add(shardOf(p.bits, count));
    }

    const { namespace } = policy.metadata;
    const byName = new Map(live.map((s) => [s.metadata.name, s]));
    const writes: Array<() => Promise<boolean>> = [];
    set.names.forEach((name, i) => {
      const current = byName.get(name);
      if (held.has(i) && current) return;
      const key = keyOf(namespace, name);
      const shardUsers = contents[i] ?? [];
      const memo = this.#rendered.get(key);
      // the same users as when the live version was last found to hold them
      if (
        memo &&
        current &&
        memo.version === current.metadata.resourceVersion &&
        sameEntries(memo.entries, shardUsers)
      )
        return;
      writes.push(async () => {
        this.#renders++;
        const fingerprints: Record<string, string> = {};
        for (const e of shardUsers) if (e.fingerprint) fingerprints[e.record.username] = e.fingerprint;
        const desired = withAppliedHash(
          this.#shardSecret(
            policy,
            name,
            count,
            shardData({ users: shardUsers.map((e) => e.record), fingerprints }),
          ),
        );
        const { wrote, version } = await this.#write(desired, current);
        if (version !== undefined) this.#rendered.set(key, { entries: shardUsers, version });
        else this.#rendered.delete(key);
        return wrote;
      });
    });
    let changed = 0;
    for (let i = 0; i < writes.length; i += WRITE_CONCURRENCY) {
      const done = await Promise.all(writes.slice(i, i + WRITE_CONCURRENCY).map((w) => w()));
      changed += done.filter(Boolean).length;
    }
    return { outcomes: evaluated.outcomes, set, changed };
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
      this.#rendered.delete(keyOf(policy.metadata.namespace, name));
      if (await this.#client.delete('v1', 'Secret', policy.metadata.namespace, name)) deleted++;
      this.#applied.delete(keyOf(policy.metadata.namespace, name));
      this.#read.delete(keyOf(policy.metadata.namespace, name));
    }
    return deleted;
  }

  forget(policyUid: string, policyKey: string): void {
    this.#known.delete(policyUid);
    this.#fingerprints.delete(policyUid);
    this.#placed.delete(policyUid);
    this.#pool.forget(policyKey);
  }

  /** Hashes in live shards whose fingerprints say which password they are of (read once per version). */
  #learn(live: readonly CachedShard[], known: Map<string, Known>): void {
    for (const shard of live) {
      const key = keyOf(shard.metadata.namespace, shard.metadata.name);
      const version = shard.metadata.resourceVersion ?? '';
      if (this.#read.get(key) === version) continue;
      this.#read.set(key, version);
      // what this process computed is newer than what a shard still shows
      for (const [username, fingerprint, hash] of (shard.shard ?? compactShardSecret(shard).shard)?.learned ??
        [])
        if (!known.has(username)) known.set(username, { fingerprint, hash });
    }
  }

  /**
   * Applies a shard unless the live one (or this process's last write on top of it) holds
   * it already. Returns whether it wrote, and the resourceVersion known to hold `desired`
   * (the live one, or the one the write made), if any.
   */
  async #write(
    desired: KubeObject,
    live: CachedShard | undefined,
  ): Promise<{ wrote: boolean; version?: string }> {
    const key = keyOf(desired.metadata.namespace, desired.metadata.name);
    const hash = desired.metadata.annotations?.[APPLIED_HASH_ANNOTATION] ?? '';
    // a hand edit of the data leaves the annotation as it was: compare the data too
    if (live?.metadata.annotations?.[APPLIED_HASH_ANNOTATION] === hash && holdsShard(desired, live))
      return { wrote: false, ...versionOf(live) };
    const mine = this.#applied.get(key);
    if (live && mine?.hash === hash && mine.basedOn === (live.metadata.resourceVersion ?? ''))
      return { wrote: false };
    const written = await this.#client.apply(desired);
    this.#applied.set(key, { hash, basedOn: live?.metadata.resourceVersion ?? '' });
    return { wrote: true, ...versionOf(written) };
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

/** Whether a live shard (its digest when cached compact) holds the desired one's data and fields. */
function holdsShard(desired: KubeObject, live: CachedShard): boolean {
  if (!live.shard) return holdsDesired(desired, live);
  const { stringData, ...rest } = desired as KubeObject & { stringData?: Record<string, string> };
  return (
    dataDigest(storedSecretData(stringData ?? {})) === live.shard.digest &&
    holdsDesired(rest as KubeObject, live)
  );
}

/** The shard count in use: that of the newest set (an older one waits for the rollout to be deleted). */
function currentCount(live: readonly CachedShard[]): number {
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
