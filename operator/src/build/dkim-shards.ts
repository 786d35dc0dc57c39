// The DKIM keys a policy's relays may sign with, copied from the SendingDomains' key
// Secrets into Secrets the policy owns ("key shards"), because the pods must not mount
// each key Secret: a new SendingDomain, a rotation or a removed key would change the pod
// template and roll every relay, and thousands of domains would make a projected volume
// of thousands of sources. The pods mount the shard set in the config volume (every
// shard's keys side by side with config.yaml, delivered with it in one swap); a key
// change rewrites Secret data only, which the kubelet carries into the running pods, and
// the relay reads the key files again with its config. Pure.
//
// Assignment: by domain, with the users shards' rule (user-shards.ts): the first 32 bits
// of sha256(domain), so a domain's keys sit in one shard and one rotation rewrites one
// Secret. The count is a power of two, at least 1 (the volume exists before the first
// SendingDomain, so that it rolls nothing either), chosen from the key bytes (about
// TARGET_BYTES per shard) and kept while within a factor of two of that; doubled while a
// shard would pass SPLIT_BYTES. A new count is a new set (the count is in the names),
// which changes the mount set: the only key change that rolls the pods, once per doubling.
//
// Size: a 2048-bit RSA key is ~1.7 KB of PEM, an Ed25519 one ~120 bytes; a domain in a
// rotation overlap holds two of each, ~3.7 KB. TARGET_BYTES 256 KiB gives ~70 to 150
// domains per shard: 5,000 domains take 64 shards at most.
import { createHash } from 'node:crypto';
import type { RelayPolicy } from '../api/types.ts';
import { DKIM_DIR, type DkimAlgorithm, keyFile } from './dkim-keys.ts';
import { names } from './names.ts';
import { MAX_SHARDS, SPLIT_BYTES, shardIndex } from './user-shards.ts';

export const DKIM_SHARD_TARGET_BYTES = 256 * 1024;
/** Label of a key shard Secret: the size of its set. */
export const DKIM_SHARD_COUNT_LABEL = 'sluice.dev/dkim-shards';

/** One private key file of the shard set: its name in the volume and its data (base64, as in a Secret). */
export interface DkimKeyFile {
  domain: string;
  file: string;
  data: string;
}

export interface DkimShardSet {
  count: number;
  names: string[];
}

// a Secret data key: [-._a-zA-Z0-9]+, at most 253 characters
const DATA_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

/**
 * The file of a key in the shard volume, named like its DNS record:
 * `<selector>._domainkey.<domain>.<algorithm>.pem` (a hash when that is no valid data key).
 */
export function keyFileName(domain: string, selector: string, algorithm: DkimAlgorithm): string {
  const name = `${selector}._domainkey.${domain}.${keyFile(algorithm)}`;
  if (DATA_KEY.test(name)) return name;
  const digest = createHash('sha256').update(`${selector}._domainkey.${domain}`).digest('hex').slice(0, 40);
  return `${digest}.${keyFile(algorithm)}`;
}

/** Where the relays read a key file. */
export function keyFilePath(file: string): string {
  return `${DKIM_DIR}/${file}`;
}

export function dkimShardName(policy: RelayPolicy, count: number, index: number): string {
  return `${names(policy).statefulSet}-dkim-${count}-${String(index).padStart(String(count - 1).length, '0')}`;
}

export function dkimShardSet(policy: RelayPolicy, count: number): DkimShardSet {
  return { count, names: Array.from({ length: count }, (_, i) => dkimShardName(policy, count, i)) };
}

function bytesOf(file: DkimKeyFile): number {
  return file.file.length + Math.ceil((file.data.length * 3) / 4);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function largestShard(files: readonly DkimKeyFile[], count: number): number {
  const sizes = new Array<number>(count).fill(0);
  for (const f of files) {
    const i = shardIndex(f.domain, count);
    sizes[i] = (sizes[i] ?? 0) + bytesOf(f);
  }
  return Math.max(0, ...sizes);
}

/** How many shards: `live` (0 when none) while within a factor of two of what the bytes ask for; doubled while one would pass SPLIT_BYTES. */
export function chooseDkimShardCount(files: readonly DkimKeyFile[], live: number): number {
  const total = files.reduce((sum, f) => sum + bytesOf(f), 0);
  const byBytes = Math.min(MAX_SHARDS, nextPowerOfTwo(Math.ceil(total / DKIM_SHARD_TARGET_BYTES)));
  let count = live > 0 && live >= byBytes / 2 && live <= byBytes * 2 ? live : byBytes;
  while (count < MAX_SHARDS && largestShard(files, count) > SPLIT_BYTES) count *= 2;
  return count;
}

/** The data of each shard of a set of `count`, keys sorted by file name. */
export function dkimShardData(files: readonly DkimKeyFile[], count: number): Array<Record<string, string>> {
  const out = Array.from({ length: count }, () => [] as DkimKeyFile[]);
  for (const f of files) out[shardIndex(f.domain, count)]?.push(f);
  return out.map((shard) =>
    Object.fromEntries(shard.sort((a, b) => (a.file < b.file ? -1 : 1)).map((f) => [f.file, f.data])),
  );
}
