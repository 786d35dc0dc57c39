// Reading the config and users files from disk: read, parse (YAML or JSON), validate,
// and make the config's relative paths absolute. The users may also be a directory of
// shard files (one per Secret of a projected volume), merged into one list.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { RelayConfig, UsersFile } from './schema.ts';
import { ConfigError, validateRelayConfig, validateUsersFile } from './validate.ts';

/** Reads and validates the relay config; relative paths in it are resolved against its directory. */
export async function loadRelayConfig(path: string): Promise<RelayConfig> {
  return relayConfigFromText(await readConfigFile(path), path);
}

/** The relay config in `text`, read from the file at `path` (whose directory relative paths are resolved against). */
export function relayConfigFromText(text: string, path: string): RelayConfig {
  const config = validateRelayConfig(parseConfigText(text, path), path);
  return resolveConfigPaths(config, dirname(path));
}

/**
 * Reads and validates a users file, or a directory of users files (`*.json`, `*.yaml`,
 * `*.yml`; dot entries such as the kubelet's `..data` are skipped) merged into one list.
 */
export async function loadUsersFile(path: string): Promise<UsersFile> {
  const shards = await usersShards(path);
  if (shards === undefined) {
    const text = await readConfigFile(path);
    return validateUsersFile(parseUsersText(text, path), path);
  }
  const users: UsersFile['users'] = [];
  const seen = new Map<string, string>();
  const problems: string[] = [];
  for (const file of shards) {
    const shard = await loadShard(file);
    for (const user of shard.users) {
      const first = seen.get(user.username);
      if (first === undefined) {
        seen.set(user.username, file);
        users.push(user);
      } else {
        problems.push(`${file}: user ${JSON.stringify(user.username)} is already listed in ${first}`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError('SLUICE_ERR_CONFIG_INVALID', path, problems);
  return { users };
}

/**
 * What a users reload compares: the file's text, or for a directory each shard's name
 * and digest (so a change to any shard, or a shard added or removed, is seen).
 */
export async function readUsersSource(path: string): Promise<string> {
  const shards = await usersShards(path);
  if (shards === undefined) return readConfigFile(path);
  const lines = await Promise.all(shards.map(async (f) => `${f}\0${digest(await readConfigFile(f))}`));
  return lines.join('\n');
}

/** The directory a users reload watches: the users directory itself, or the users file's directory. */
export async function usersWatchDir(path: string): Promise<string> {
  return (await usersShards(path)) === undefined ? dirname(resolve(path)) : resolve(path);
}

const SHARD_FILE = /^[^.].*\.(json|ya?ml)$/;

/** The shard files of a users directory (sorted), or undefined when `path` is not a directory. */
async function usersShards(path: string): Promise<string[] | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isDirectory()) return undefined;
  const names = await readdir(path).catch((err: unknown) => {
    const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'EIO';
    throw new ConfigError('SLUICE_ERR_CONFIG_READ', path, [`${path}: cannot list the directory (${code})`], {
      cause: err,
    });
  });
  return names
    .filter((n) => SHARD_FILE.test(n))
    .sort()
    .map((n) => join(path, n));
}

// Parsed shards by path and content digest: a reload parses and validates only the
// shards that changed (a 100,000-user directory is about 30 MB; parsing all of it again
// for a one-user change would hold the event loop for seconds).
const shardCache = new Map<string, { digest: string; value: UsersFile }>();
const SHARD_CACHE_LIMIT = 4096;

async function loadShard(file: string): Promise<UsersFile> {
  const text = await readConfigFile(file);
  const key = digest(text);
  const cached = shardCache.get(file);
  if (cached?.digest === key) return cached.value;
  const value = validateUsersFile(parseUsersText(text, file), file);
  if (shardCache.size >= SHARD_CACHE_LIMIT) shardCache.clear();
  shardCache.set(file, { digest: key, value });
  return value;
}

/** JSON files go through JSON.parse (hundreds of times faster than the YAML parser on large files). */
function parseUsersText(text: string, source: string): unknown {
  if (source.endsWith('.json')) {
    try {
      return JSON.parse(text);
    } catch {
      // fall through: the YAML parser names the line and column
    }
  }
  return parseConfigText(text, source);
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The file's text, or SLUICE_ERR_CONFIG_READ naming the path and the errno code. */
export async function readConfigFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err: unknown) {
    const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'EIO';
    throw new ConfigError('SLUICE_ERR_CONFIG_READ', path, [`${path}: cannot read the file (${code})`], {
      cause: err,
    });
  }
}

/** Parses YAML or JSON (JSON is YAML); syntax errors become SLUICE_ERR_CONFIG_PARSE with line:column. */
export function parseConfigText(text: string, source: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      const message =
        e.code === 'MULTIPLE_DOCS' ? 'the file holds more than one YAML document (a second ---)' : e.message;
      return `${source}:${line}:${col}: ${message}`;
    });
    throw new ConfigError('SLUICE_ERR_CONFIG_PARSE', source, problems);
  }
  try {
    return doc.toJS();
  } catch (err: unknown) {
    // toJS refuses alias bombs (a billion laughs) rather than expanding them.
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError('SLUICE_ERR_CONFIG_PARSE', source, [`${source}: ${message}`], { cause: err });
  }
}

/** Every path in the config (fields named *File or *Dir) made absolute, relative to baseDir. */
export function resolveConfigPaths(config: RelayConfig, baseDir: string): RelayConfig {
  const walk = (value: unknown, key: string): unknown => {
    if (typeof value === 'string') return /(File|Dir)$/.test(key) ? resolve(baseDir, value) : value;
    if (Array.isArray(value)) return value.map((v) => walk(v, ''));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    return value;
  };
  return walk(config, '') as RelayConfig;
}
