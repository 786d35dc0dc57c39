// The shared state store on Redis: every relay pod of a policy sees the same counters,
// locks, slots, usage and maps. Each update is one round trip: one Lua script (EVALSHA,
// EVAL on NOSCRIPT) that checks and updates atomically and sets the TTL of every key it
// writes, so a crash can never leave a key behind without one (a usage report, read
// only, takes two). Keys are `sluice:{namespace}:key`; the hash tag puts one policy's
// keys in one Cluster slot, so multi-key scripts work.
// Time comes from the caller (`now`), never from the Redis server, so tests inject it;
// only TTLs run on the server's clock.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { SluiceError } from '../errors.ts';
import { bucketAt, bucketKey, rateDecision, usageKeys, type WindowCounts } from './memory-store.ts';
import type {
  FailureRule,
  MapEntry,
  RateDecision,
  RateRule,
  StateStore,
  UsageRow,
  UsageUpdate,
} from './store.ts';

// KEYS: per rule the current and previous bucket. ARGV: per rule cost, limit, window,
// elapsed, bucket TTL. Returns the first blocked rule (0-based, -1 for none), then per
// rule the current and previous counts read before any update.
const CONSUME = `
local n = #KEYS / 2
local out = { -1 }
for i = 1, n do
  local a = (i - 1) * 5
  local cost, limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local window, elapsed = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local curr = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  out[2 * i] = curr
  out[2 * i + 1] = prev
  if out[1] < 0 and prev * (window - elapsed) / window + curr + cost > limit then out[1] = i - 1 end
end
if out[1] < 0 then
  for i = 1, n do
    local a = (i - 1) * 5
    if tonumber(ARGV[a + 1]) > 0 then
      redis.call('INCRBY', KEYS[2 * i - 1], ARGV[a + 1])
      redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[a + 5])
    end
  end
end
return out
`;

// KEYS: per rule current bucket, previous bucket, lock. ARGV: per rule threshold,
// window, elapsed, bucket TTL, cooldown. Returns per rule 1 when the lock is set.
const RECORD_FAILURE = `
local out = {}
for i = 1, #KEYS / 3 do
  local k, a = (i - 1) * 3, (i - 1) * 5
  local threshold, window, elapsed = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local curr = redis.call('INCRBY', KEYS[k + 1], 1)
  redis.call('PEXPIRE', KEYS[k + 1], ARGV[a + 4])
  local prev = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  if prev * (window - elapsed) / window + curr >= threshold then
    redis.call('SET', KEYS[k + 3], '1', 'PX', ARGV[a + 5], 'NX')
  end
  out[i] = redis.call('EXISTS', KEYS[k + 3])
end
return out
`;

const LOCK_REMAINING = `
local out = {}
for i = 1, #KEYS do
  out[i] = math.max(0, redis.call('PTTL', KEYS[i]))
end
return out
`;

// KEYS: the slot set. ARGV: slotId, limit, now, expiry of the slot. Members are scored
// by expiry; the set lives as long as its longest-lived member.
const ACQUIRE_SLOT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local taken = 0
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  taken = 1
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
if last then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(last) - tonumber(ARGV[3]))))
end
return taken
`;

// KEYS: per update the bucket's user set, the user's counter hash and distinct-value
// HyperLogLog. ARGV: per update user, TTL, number of counters, (name, amount) pairs,
// number of distinct values, the values.
const ADD_USAGE = `
local a = 1
for i = 0, #KEYS / 3 - 1 do
  local users, counts, distinct = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local user, ttl, nc = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  for j = 1, nc do
    redis.call('HINCRBY', counts, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if nc > 0 then redis.call('PEXPIRE', counts, ttl) end
  local nd = tonumber(ARGV[a])
  a = a + 1
  if nd > 0 then
    redis.call('PFADD', distinct, unpack(ARGV, a, a + nd - 1))
    redis.call('PEXPIRE', distinct, ttl)
    a = a + nd
  end
  redis.call('SADD', users, user)
  redis.call('PEXPIRE', users, ttl)
end
return 0
`;

// KEYS: user sets of buckets. Returns each one's members.
const USAGE_USERS = `
local out = {}
for i = 1, #KEYS do out[i] = redis.call('SMEMBERS', KEYS[i]) end
return out
`;

// KEYS: per row the counter hash and the HyperLogLog. Returns per row the hash's fields
// and values (flat) and the distinct count.
const READ_USAGE = `
local out = {}
for i = 0, #KEYS / 2 - 1 do
  out[2 * i + 1] = redis.call('HGETALL', KEYS[2 * i + 1])
  out[2 * i + 2] = redis.call('PFCOUNT', KEYS[2 * i + 2])
end
return out
`;

// KEYS: the expiry sorted set and the value hash of a map. ARGV: field, value, now,
// expiry, onlyIfAbsent. Drops expired fields, sets the field unless kept, and gives both
// keys the lifetime of the longest-lived field.
const MAP_PUT = `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
  redis.call('HDEL', KEYS[2], unpack(gone))
end
if ARGV[5] == '1' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
local keep = math.max(1, math.ceil(last - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return 1
`;

// KEYS: as MAP_PUT. ARGV: now. Returns field, expiry, value triples of the live fields.
const MAP_ENTRIES = `
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i]) or ''
end
return out
`;

// KEYS: as MAP_PUT. ARGV: field, now. Returns expiry and value of a live field, or nothing.
const MAP_GET = `
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at or tonumber(at) <= tonumber(ARGV[2]) then return {} end
return { at, redis.call('HGET', KEYS[2], ARGV[1]) or '' }
`;

// KEYS: as MAP_PUT. ARGV: now, then the fields. Returns expiry and value per field, both
// '' for a field that is not live (a nil would end the list).
const MAP_GET_MANY = `
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local at = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if at and tonumber(at) > now then
    out[#out + 1] = at
    out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[i]) or ''
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
`;

const MAP_DELETE = `
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
`;

/** Rows read per script call, so one large report never blocks Redis for long. */
const READ_CHUNK = 1000;

type Arg = string | number;

/** The commands defineCommand adds; the key count comes first because it varies per call. */
interface ScriptCommands {
  sluiceConsume(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceRecordFailure(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceLockRemaining(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceAcquireSlot(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceAddUsage(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceUsageUsers(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceReadUsage(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceMapPut(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceMapEntries(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceMapDelete(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceMapGet(numKeys: number, ...args: Arg[]): Promise<unknown>;
  sluiceMapGetMany(numKeys: number, ...args: Arg[]): Promise<unknown>;
}

export type RedisClient = Redis | Cluster;

export interface RedisStoreOptions {
  client: RedisClient;
  /** Usually the RelayPolicy's namespace/name; no braces (it is the Cluster hash tag). */
  namespace: string;
}

export class RedisStore implements StateStore {
  readonly kind = 'redis';
  readonly #client: RedisClient;
  readonly #scripts: ScriptCommands;
  readonly #prefix: string;
  #closed: Promise<void> | undefined;

  constructor(options: RedisStoreOptions) {
    if (/[{}]/.test(options.namespace) || options.namespace === '') {
      throw new SluiceError(
        'SLUICE_ERR_CONFIG_INVALID',
        `state namespace ${JSON.stringify(options.namespace)} is empty or has braces`,
      );
    }
    this.#client = options.client;
    this.#prefix = `sluice:{${options.namespace}}:`;
    const c = options.client;
    c.defineCommand('sluiceConsume', { lua: CONSUME });
    c.defineCommand('sluiceRecordFailure', { lua: RECORD_FAILURE });
    c.defineCommand('sluiceLockRemaining', { lua: LOCK_REMAINING, readOnly: true });
    c.defineCommand('sluiceAcquireSlot', { lua: ACQUIRE_SLOT });
    c.defineCommand('sluiceAddUsage', { lua: ADD_USAGE });
    c.defineCommand('sluiceUsageUsers', { lua: USAGE_USERS, readOnly: true });
    c.defineCommand('sluiceReadUsage', { lua: READ_USAGE, readOnly: true });
    c.defineCommand('sluiceMapPut', { lua: MAP_PUT });
    c.defineCommand('sluiceMapEntries', { lua: MAP_ENTRIES, readOnly: true });
    c.defineCommand('sluiceMapDelete', { lua: MAP_DELETE });
    c.defineCommand('sluiceMapGet', { lua: MAP_GET, readOnly: true });
    c.defineCommand('sluiceMapGetMany', { lua: MAP_GET_MANY, readOnly: true });
    this.#scripts = c as unknown as ScriptCommands;
  }

  /** The Redis key for a store key. */
  key(key: string): string {
    return this.#prefix + key;
  }

  async consume(rules: readonly RateRule[], now: number): Promise<RateDecision> {
    if (rules.length === 0) return { allowed: true, retryAfterMs: 0, remaining: [] };
    const keys: string[] = [];
    const args: Arg[] = [];
    const elapsed: number[] = [];
    for (const r of rules) {
      const bucket = bucketAt(now, r.windowMs);
      keys.push(
        this.#bucket(r.key, r.windowMs, bucket.index),
        this.#bucket(r.key, r.windowMs, bucket.index - 1),
      );
      args.push(r.cost, r.limit, r.windowMs, bucket.elapsed, 2 * r.windowMs);
      elapsed.push(bucket.elapsed);
    }
    const reply = integers(await this.#scripts.sluiceConsume(keys.length, ...keys, ...args), 1 + keys.length);
    const counts = rules.map(
      (_, i): WindowCounts => ({ curr: reply[1 + 2 * i]!, prev: reply[2 + 2 * i]!, elapsed: elapsed[i]! }),
    );
    return rateDecision(rules, counts, reply[0]!);
  }

  async recordFailure(rules: readonly FailureRule[], now: number): Promise<boolean[]> {
    if (rules.length === 0) return [];
    const keys: string[] = [];
    const args: Arg[] = [];
    for (const r of rules) {
      const bucket = bucketAt(now, r.windowMs);
      keys.push(
        this.#bucket(r.counterKey, r.windowMs, bucket.index),
        this.#bucket(r.counterKey, r.windowMs, bucket.index - 1),
        this.key(r.lockKey),
      );
      args.push(r.threshold, r.windowMs, bucket.elapsed, 2 * r.windowMs, ttl(r.cooldownMs));
    }
    const reply = await this.#scripts.sluiceRecordFailure(keys.length, ...keys, ...args);
    return integers(reply, rules.length).map((locked) => locked === 1);
  }

  async lockRemaining(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const reply = await this.#scripts.sluiceLockRemaining(keys.length, ...keys.map((k) => this.key(k)));
    return integers(reply, keys.length);
  }

  async acquireSlot(
    key: string,
    slotId: string,
    limit: number,
    ttlMs: number,
    now: number,
  ): Promise<boolean> {
    const reply = await this.#scripts.sluiceAcquireSlot(1, this.key(key), slotId, limit, now, now + ttlMs);
    return reply === 1;
  }

  async releaseSlot(key: string, slotId: string): Promise<void> {
    await this.#client.zrem(this.key(key), slotId);
  }

  async getCache(key: string): Promise<string | null> {
    return this.#client.get(this.key(key));
  }

  async setCache(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#client.set(this.key(key), value, 'PX', ttl(ttlMs));
  }

  async addUsage(updates: readonly UsageUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    const keys: string[] = [];
    const args: Arg[] = [];
    for (const u of updates) {
      const k = usageKeys(u.bucket, u.user);
      keys.push(this.key(k.users), this.key(k.counts), this.key(k.distinct));
      const counts = Object.entries(u.counts);
      args.push(u.user, ttl(u.ttlMs), counts.length, ...counts.flat(), u.distinct.length, ...u.distinct);
    }
    await this.#scripts.sluiceAddUsage(keys.length, ...keys, ...args);
  }

  /**
   * Two steps, both read-only: the users each bucket lists, then their rows (in chunks),
   * so every key a script touches is one it was given.
   */
  async readUsage(buckets: readonly string[], users?: readonly string[]): Promise<UsageRow[]> {
    if (buckets.length === 0) return [];
    let pairs: Array<[string, string]>;
    if (users === undefined) {
      const reply = await this.#scripts.sluiceUsageUsers(
        buckets.length,
        ...buckets.map((b) => this.key(usageKeys(b, '').users)),
      );
      const members = stringLists(reply, buckets.length);
      pairs = buckets.flatMap((b, i) => [...(members[i] ?? [])].sort().map((u): [string, string] => [b, u]));
    } else {
      pairs = buckets.flatMap((b) => users.map((u): [string, string] => [b, u]));
    }
    const rows: UsageRow[] = [];
    for (let start = 0; start < pairs.length; start += READ_CHUNK) {
      const chunk = pairs.slice(start, start + READ_CHUNK);
      const keys = chunk.flatMap(([b, u]) => {
        const k = usageKeys(b, u);
        return [this.key(k.counts), this.key(k.distinct)];
      });
      const reply = await this.#scripts.sluiceReadUsage(keys.length, ...keys);
      if (!Array.isArray(reply) || reply.length !== keys.length) {
        throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
      }
      chunk.forEach(([bucket, name], i) => {
        const flat = reply[2 * i] as unknown;
        const distinct = reply[2 * i + 1] as unknown;
        if (!Array.isArray(flat) || !Number.isInteger(distinct)) {
          throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
        }
        if (flat.length === 0 && distinct === 0) return;
        const counts: Record<string, number> = {};
        for (let j = 0; j + 1 < flat.length; j += 2) counts[String(flat[j])] = Number(flat[j + 1]);
        rows.push({ bucket, user: name, counts, distinct: distinct as number });
      });
    }
    return rows;
  }

  async mapPut(
    key: string,
    field: string,
    value: string,
    ttlMs: number,
    now: number,
    onlyIfAbsent: boolean,
  ): Promise<boolean> {
    const k = this.#mapKeys(key);
    const reply = await this.#scripts.sluiceMapPut(
      2,
      k.expiry,
      k.values,
      field,
      value,
      now,
      now + ttlMs,
      onlyIfAbsent ? '1' : '0',
    );
    return reply === 1;
  }

  async mapEntries(key: string, now: number): Promise<MapEntry[]> {
    const k = this.#mapKeys(key);
    const reply = await this.#scripts.sluiceMapEntries(2, k.expiry, k.values, now);
    if (!Array.isArray(reply) || reply.length % 3 !== 0) {
      throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
    }
    const out: MapEntry[] = [];
    for (let i = 0; i < reply.length; i += 3) {
      out.push({ field: String(reply[i]), expiresAt: Number(reply[i + 1]), value: String(reply[i + 2]) });
    }
    return out;
  }

  async mapGet(key: string, field: string, now: number): Promise<MapEntry | null> {
    const k = this.#mapKeys(key);
    const reply = await this.#scripts.sluiceMapGet(2, k.expiry, k.values, field, now);
    if (!Array.isArray(reply) || (reply.length !== 0 && reply.length !== 2)) {
      throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
    }
    if (reply.length === 0) return null;
    return { field, expiresAt: Number(reply[0]), value: String(reply[1]) };
  }

  async mapGetMany(key: string, fields: readonly string[], now: number): Promise<Array<MapEntry | null>> {
    if (fields.length === 0) return [];
    const k = this.#mapKeys(key);
    const reply = await this.#scripts.sluiceMapGetMany(2, k.expiry, k.values, now, ...fields);
    if (!Array.isArray(reply) || reply.length !== fields.length * 2) {
      throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
    }
    return fields.map((field, i) => {
      const at = String(reply[2 * i]);
      return at === '' ? null : { field, expiresAt: Number(at), value: String(reply[2 * i + 1]) };
    });
  }

  async mapDelete(key: string, field: string): Promise<boolean> {
    const k = this.#mapKeys(key);
    return (await this.#scripts.sluiceMapDelete(2, k.expiry, k.values, field)) === 1;
  }

  #mapKeys(key: string): { expiry: string; values: string } {
    return { expiry: this.key(`${key}:expiry`), values: this.key(`${key}:values`) };
  }

  /** Quits the client; later calls wait for the same. */
  close(): Promise<void> {
    this.#closed ??= this.#quit();
    return this.#closed;
  }

  async #quit(): Promise<void> {
    // QUIT needs a live connection (the offline queue is off); otherwise just drop it.
    if (this.#client.status === 'ready') {
      await this.#client.quit().catch(() => this.#client.disconnect());
    } else {
      this.#client.disconnect();
    }
  }

  #bucket(key: string, windowMs: number, index: number): string {
    return this.key(bucketKey(key, windowMs, index));
  }
}

export interface RedisClientConfig {
  mode: 'standalone' | 'sentinel' | 'cluster';
  /** host:port of the server, the sentinels, or the cluster seed nodes. */
  nodes: string[];
  sentinelName?: string;
  username?: string;
  password?: string;
  tls: boolean;
  db: number;
  commandTimeoutMs: number;
}

/** Reconnect delay: exponential from 50 ms, capped at 5 s, and it never gives up. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.max(0, attempt - 1), 5000);
}

/**
 * An ioredis client for the configured topology. Commands fail fast while the
 * connection is down (no offline queue) so the relay can fall back instead of waiting.
 */
export function createRedisClient(config: RedisClientConfig): RedisClient {
  const [first] = config.nodes;
  if (first === undefined) throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', 'redis: no nodes given');
  const connection = {
    username: config.username,
    password: config.password,
    tls: config.tls ? {} : undefined,
    commandTimeout: config.commandTimeoutMs,
    maxRetriesPerRequest: 1,
    // After a failover the old master answers READONLY: reconnect to find the new one.
    // Branching on the reply's error code (its first word), which is Redis protocol.
    reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
  };
  // Commands issued in the same tick leave in one write and their replies come back in one
  // read (a message's checks from several sessions at once): 2.7 fewer system calls per
  // message on the main thread, and fewer for Redis (bench/README.md).
  const resilience = { enableOfflineQueue: false, lazyConnect: false, enableAutoPipelining: true };
  switch (config.mode) {
    case 'standalone':
      return new Redis({
        ...parseNode(first, 6379),
        ...connection,
        ...resilience,
        db: config.db,
        retryStrategy: reconnectDelay,
      });
    case 'sentinel': {
      if (config.sentinelName === undefined) {
        throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', 'redis: sentinel mode needs sentinelName');
      }
      const options: RedisOptions = {
        sentinels: config.nodes.map((n) => parseNode(n, 26379)),
        name: config.sentinelName,
        ...connection,
        ...resilience,
        db: config.db,
        retryStrategy: reconnectDelay,
        sentinelRetryStrategy: reconnectDelay,
        // One switch for both hops: the sentinels and the master they name.
        enableTLSForSentinelMode: config.tls,
        sentinelTLS: config.tls ? {} : undefined,
      };
      return new Redis(options);
    }
    case 'cluster':
      if (config.db !== 0)
        throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', 'redis: cluster mode has only db 0');
      return new Cluster(
        config.nodes.map((n) => parseNode(n, 6379)),
        { ...resilience, clusterRetryStrategy: reconnectDelay, redisOptions: connection },
      );
  }
}

/**
 * A new password for the connections the client makes from now on (ioredis reads it on
 * each connect). Open connections stay authenticated as they are: Redis does not drop
 * them when its password changes either.
 */
export function setRedisPassword(client: RedisClient, password: string): void {
  if (client instanceof Cluster) {
    client.options.redisOptions = { ...client.options.redisOptions, password };
    // the pool that connects to newly found nodes keeps its own copy of redisOptions
    const pool = (client as unknown as { connectionPool?: { redisOptions?: RedisOptions } }).connectionPool;
    if (pool?.redisOptions) pool.redisOptions.password = password;
    for (const node of client.nodes('all')) node.options.password = password;
    return;
  }
  client.options.password = password;
}

/** "host:port" (the config schema's form) into ioredis's { host, port }. */
function parseNode(node: string, defaultPort: number): { host: string; port: number } {
  const colon = node.lastIndexOf(':');
  if (colon < 0) return { host: node, port: defaultPort };
  const port = Number(node.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', `redis: bad node address ${JSON.stringify(node)}`);
  }
  return { host: node.slice(0, colon), port };
}

/** A script reply as `length` integers; anything else means a bug, not an outage. */
function integers(reply: unknown, length: number): number[] {
  if (!Array.isArray(reply) || reply.length !== length || !reply.every((v) => Number.isInteger(v))) {
    throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
  }
  return reply as number[];
}

/** A script reply as `length` lists of strings. */
function stringLists(reply: unknown, length: number): string[][] {
  if (
    !Array.isArray(reply) ||
    reply.length !== length ||
    !reply.every((l) => Array.isArray(l) && l.every((v) => typeof v === 'string'))
  ) {
    throw new TypeError(`unexpected reply from a state script: ${JSON.stringify(reply)}`);
  }
  return reply as string[][];
}

/** TTLs are whole milliseconds, at least 1 (Redis refuses PX 0). */
function ttl(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}
