// A policy's users spread over several Secrets ("shards"), because one Secret holds at
// most 1 MiB. Pure.
//
// Assignment: the first 32 bits of sha256(username), top bits first: with 2^k shards a
// user sits in shard `h >>> (32 - k)`, so one user change rewrites one shard and
// doubling the count splits every shard in two. The count is a power of two chosen from
// the number of users (about USERS_PER_SHARD each) and kept while it stays within a
// factor of two of that (no reshuffle at every crossing), or doubled while a shard
// would exceed SPLIT_BYTES.
//
// Size bound: the largest user the CRD admits is username 256 + a hash (at most
// MAX_HASH_CHARS 240) + 100 allowedSenders of 320 + 10 rateLimits of ~70 bytes, about
// 33.7 KB of JSON with its fingerprint entry; a shard is split before it passes
// SPLIT_BYTES (768 KiB), so a written shard stays under the API server's 1 MiB with
// at least 23 such users in it.
// Typical users (one or two senders, ~250 bytes) give ~1000 users in ~250 KB per shard.
import { createHash, createHmac } from 'node:crypto';
import type { UserRecord } from '@sluice/relay/config-schema';

export const USERS_PER_SHARD = 1000;
export const SPLIT_BYTES = 768 * 1024;
export const MAX_SHARDS = 1024;
/** The longest hash the relay accepts: scrypt/argon2id parameters and at most 64 bytes each of salt and hash. */
export const MAX_HASH_CHARS = 240;

/** Key of the users file inside a shard Secret, and of the fingerprints the relays never see. */
export const SHARD_USERS_KEY = 'users.json';
export const SHARD_FINGERPRINTS_KEY = 'fingerprints.json';

// where a user goes: the top 29 bits of sha256(username), for any power-of-two count
// (29 bits are a small integer V8 keeps in an object's slot, not a heap number, and more
// than MAX_SHARDS, 2^10, needs). A reconcile keeps them with each placed user.
const BITS = 29;

/** The top bits of sha256(username) that place it in a shard (see shardOf). */
export function usernameBits(username: string): number {
  return createHash('sha256').update(username).digest().readUInt32BE(0) >>> (32 - BITS);
}

/** The shard of a user with these bits (usernameBits) among `count`, a power of two. */
export function shardOf(bits: number, count: number): number {
  return count <= 1 ? 0 : bits >>> (BITS - Math.log2(count));
}

export function shardIndex(username: string, count: number): number {
  return count <= 1 ? 0 : shardOf(usernameBits(username), count);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** JSON bytes of one user in a shard (record and fingerprint entry), for the split rule. */
export function userBytes(record: UserRecord, fingerprint: string | undefined): number {
  return (
    Buffer.byteLength(JSON.stringify(record)) +
    1 +
    (fingerprint ? Buffer.byteLength(JSON.stringify(record.username)) + fingerprint.length + 4 : 0)
  );
}

/**
 * How many shards: `live` (the count in use, 0 when none) while it stays within a factor
 * of two of the count the number of users asks for, else that count; doubled while a
 * shard would pass SPLIT_BYTES.
 */
export function chooseShardCount(
  users: ReadonlyArray<{ bits: number; bytes: number }>,
  live: number,
): number {
  const byCount = Math.min(MAX_SHARDS, nextPowerOfTwo(Math.ceil(users.length / USERS_PER_SHARD)));
  let count = live > 0 && live >= byCount / 2 && live <= byCount * 2 ? live : byCount;
  while (count < MAX_SHARDS && largestShard(users, count) > SPLIT_BYTES) count *= 2;
  return count;
}

function largestShard(users: ReadonlyArray<{ bits: number; bytes: number }>, count: number): number {
  const sizes = new Array<number>(count).fill(0);
  for (const u of users) {
    const i = shardOf(u.bits, count);
    sizes[i] = (sizes[i] ?? 0) + u.bytes;
  }
  return Math.max(0, ...sizes);
}

/**
 * A fingerprint of a plain password: HMAC-SHA256 under a per-policy key (kept in the
 * policy's internal Secret), 128 bits. It tells that a password is unchanged, so its
 * scrypt hash is reused after a restart, without storing anything a password could be
 * guessed from faster than from the scrypt hash beside it.
 */
export function passwordFingerprint(key: string, username: string, password: string): string {
  return createHmac('sha256', key)
    .update(username)
    .update('\0')
    .update(password)
    .digest('base64url')
    .slice(0, 22);
}

export interface ShardContent {
  users: UserRecord[];
  fingerprints: Record<string, string>;
}

/** The data of one shard Secret: the users file (sorted by username) and the fingerprints. */
export function shardData(content: ShardContent): Record<string, string> {
  const users = [...content.users].sort((a, b) => (a.username < b.username ? -1 : 1));
  const fingerprints = Object.fromEntries(
    Object.entries(content.fingerprints).sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  return {
    [SHARD_USERS_KEY]: JSON.stringify({ users }),
    [SHARD_FINGERPRINTS_KEY]: JSON.stringify(fingerprints),
  };
}

/** Name of shard `index` of a set of `count`: the count is in the name, so a new set never overwrites the one pods still mount. */
export function shardName(usersSecretBase: string, count: number, index: number): string {
  return `${usersSecretBase}-${count}-${String(index).padStart(String(count - 1).length, '0')}`;
}

/** Where shard `index` appears in the relay's users directory. */
export function shardFile(count: number, index: number): string {
  return `users-${count}-${String(index).padStart(String(count - 1).length, '0')}.json`;
}
