import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import {
  type RedisSentinelHandle,
  type RedisServerHandle,
  startRedisSentinel,
  startRedisServer,
} from '../testing/redis-server.ts';
import { storeContract } from '../testing/store-contract.ts';
import { waitFor } from '../testing/wait-for.ts';
import { createRedisClient, type RedisClient, type RedisClientConfig, RedisStore } from './redis-store.ts';

const T = 28_333_334 * 60_000;
let server: RedisServerHandle;

before(async () => {
  server = await startRedisServer();
});
after(async () => {
  await server?.stop();
});

function config(nodes: string[], extra: Partial<RedisClientConfig> = {}): RedisClientConfig {
  return { mode: 'standalone', nodes, tls: false, db: 0, commandTimeoutMs: 2000, ...extra };
}

async function ready<C extends RedisClient>(client: C): Promise<C> {
  if (client.status !== 'ready') await once(client, 'ready', { signal: AbortSignal.timeout(10_000) });
  return client;
}

/** A relay pod's view: its own client and store on the shared server. */
async function pod(namespace: string): Promise<RedisStore> {
  return new RedisStore({ client: await ready(createRedisClient(config(server.nodes))), namespace });
}

/** A plain client for looking at what the store wrote. */
async function inspector(): Promise<Redis> {
  return (await ready(createRedisClient(config(server.nodes)))) as Redis;
}

async function scan(client: Redis, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

storeContract('redis', async () => {
  const store = await pod(`test-${randomUUID()}`);
  return { store, cleanup: () => store.close() };
});

describe('RedisStore', () => {
  it('gives every key it writes a TTL', async () => {
    const ns = `ttl-${randomUUID()}`;
    const store = await pod(ns);
    const look = await inspector();
    try {
      await store.consume([{ key: 'rate:user:a', cost: 2, limit: 10, windowMs: 60_000 }], T);
      await store.consume([{ key: 'rate:user:a', cost: 1, limit: 10, windowMs: 60_000 }], T + 61_000);
      await store.consume([{ key: 'rate:user:b', cost: 0, limit: 10, windowMs: 60_000 }], T);
      const rule = {
        counterKey: 'authfail:a',
        lockKey: 'lock:a',
        threshold: 2,
        windowMs: 60_000,
        cooldownMs: 30_000,
      };
      await store.recordFailure([rule], T);
      await store.recordFailure([rule], T);
      await store.acquireSlot('conn:ip:a', 's1', 5, 60_000, T);
      await store.acquireSlot('conn:ip:a', 's2', 5, 60_000, T);
      await store.releaseSlot('conn:ip:a', 's1');
      await store.setCache('dnsbl:a', 'none', 60_000);
      await store.addUsage([
        { bucket: 'usage:h:1', user: 'a', counts: { messages: 1 }, distinct: ['192.0.2.1'], ttlMs: 60_000 },
      ]);
      await store.mapPut('abuse:flags', 'a:many_ips', 'x', 60_000, T, true);
      await store.mapPut('abuse:flags', 'b:many_ips', 'x', 60_000, T, true);
      await store.mapDelete('abuse:flags', 'b:many_ips');
      const keys = await scan(look, `sluice:{${ns}}:*`);
      // Two rate buckets, one failure bucket, the lock, the slot set, the cache entry;
      // the usage bucket's user set, counters and HyperLogLog; the map's two keys.
      assert.equal(keys.length, 11, keys.join(' '));
      for (const key of keys) {
        const pttl = await look.pttl(key);
        assert.ok(pttl > 0 && pttl <= 120_000, `${key} has PTTL ${pttl}`);
      }
    } finally {
      await store.close();
      await look.quit();
    }
  });

  it('puts every key under sluice:{namespace}:', async () => {
    const ns = `prefix-${randomUUID()}`;
    const marker = randomUUID();
    const store = await pod(ns);
    const look = await inspector();
    try {
      await store.consume([{ key: `rate:${marker}`, cost: 1, limit: 10, windowMs: 60_000 }], T);
      await store.recordFailure(
        [
          {
            counterKey: `fail:${marker}`,
            lockKey: `lock:${marker}`,
            threshold: 1,
            windowMs: 60_000,
            cooldownMs: 1000,
          },
        ],
        T,
      );
      await store.acquireSlot(`conn:${marker}`, 's', 1, 60_000, T);
      await store.setCache(`cache:${marker}`, 'v', 60_000);
      const keys = await scan(look, `*${marker}*`);
      assert.equal(keys.length, 5, keys.join(' '));
      for (const key of keys) assert.ok(key.startsWith(`sluice:{${ns}}:`), key);
      assert.equal(await look.get(`sluice:{${ns}}:cache:${marker}`), 'v');
    } finally {
      await store.close();
      await look.quit();
    }
  });

  it('shares one limit between two pods (two clients)', async () => {
    const ns = `pods-${randomUUID()}`;
    const [a, b] = [await pod(ns), await pod(ns)];
    const rule = { key: 'rate:user:shared', cost: 1, limit: 10, windowMs: 60_000 };
    try {
      for (let i = 0; i < 6; i++) assert.equal((await a.consume([rule], T)).allowed, true);
      for (let i = 0; i < 4; i++) assert.equal((await b.consume([rule], T)).allowed, true);
      assert.equal((await a.consume([rule], T)).allowed, false);
      assert.equal((await b.consume([rule], T)).allowed, false);
      assert.equal(await a.acquireSlot('conn:ip:x', 'pod-a-1', 1, 60_000, T), true);
      assert.equal(await b.acquireSlot('conn:ip:x', 'pod-b-1', 1, 60_000, T), false);
      await b.setCache('dnsbl:x', 'listed', 60_000);
      assert.equal(await a.getCache('dnsbl:x'), 'listed');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('never admits more than the limit under concurrent calls from two pods', async () => {
    const ns = `race-${randomUUID()}`;
    const [a, b] = [await pod(ns), await pod(ns)];
    const rule = { key: 'rate:user:race', cost: 1, limit: 30, windowMs: 60_000 };
    try {
      const calls = Array.from({ length: 80 }, (_, i) => (i % 2 ? a : b).consume([rule], T));
      const admitted = (await Promise.all(calls)).filter((d) => d.allowed).length;
      assert.equal(admitted, 30);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('sends the calls made in one tick (several sessions at once) in one write, each with its own answer', async () => {
    const client = (await ready(createRedisClient(config(server.nodes)))) as Redis;
    const store = new RedisStore({ client, namespace: `batch-${randomUUID()}` });
    const rule = (user: string) => ({ key: `rate:user:${user}`, cost: 1, limit: 2, windowMs: 60_000 });
    try {
      await store.consume([rule('warm')], T); // the script is known to the server from here on
      const socket = client.stream;
      const write = socket.write;
      let writes = 0;
      socket.write = function (this: typeof socket, ...args: Parameters<typeof write>) {
        writes++;
        return write.apply(this, args);
      } as typeof write;
      // 20 sessions' checks, three users: each user's third call and later are refused
      const users = Array.from({ length: 20 }, (_, i) => `u${i % 3}`);
      const answers = await Promise.all(users.map((u) => store.consume([rule(u)], T)));
      socket.write = write;
      assert.equal(writes, 1, 'one write for the 20 calls');
      assert.equal(answers.filter((a) => a.allowed).length, 6);
      assert.deepEqual(
        answers.map((a) => a.allowed),
        users.map((u, i) => users.slice(0, i).filter((v) => v === u).length < 2),
      );
    } finally {
      await store.close();
    }
  });

  it('keeps working after the server forgets its scripts (EVALSHA falls back to EVAL)', async () => {
    const store = await pod(`noscript-${randomUUID()}`);
    const look = await inspector();
    const rule = { key: 'rate:user:n', cost: 1, limit: 2, windowMs: 60_000 };
    try {
      assert.equal((await store.consume([rule], T)).allowed, true);
      await look.script('FLUSH');
      assert.equal((await store.consume([rule], T)).allowed, true);
      assert.equal((await store.consume([rule], T)).allowed, false);
    } finally {
      await store.close();
      await look.quit();
    }
  });

  it('refuses a namespace that would break the cluster hash tag', async () => {
    const client = await inspector();
    try {
      assert.throws(() => new RedisStore({ client, namespace: 'a}b' }), {
        code: 'SLUICE_ERR_CONFIG_INVALID',
      });
    } finally {
      await client.quit();
    }
  });
});

describe('createRedisClient in cluster mode', () => {
  let cluster: RedisServerHandle;
  before(async () => {
    // A one-node cluster still refuses multi-key scripts across slots (CROSSSLOT).
    // Announce the address, or CLUSTER SLOTS names the node with an empty host.
    cluster = await startRedisServer({
      args: ['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1'],
    });
    const admin = await ready(createRedisClient(config(cluster.nodes)) as Redis);
    try {
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      const deadline = Date.now() + 10_000;
      while (!String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) assert.fail('cluster did not become ok');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await admin.quit();
    }
  });
  after(async () => {
    await cluster?.stop();
  });

  it('runs multi-key scripts: the namespace hash tag keeps keys in one slot', async () => {
    const client = createRedisClient(config(cluster.nodes, { mode: 'cluster' }));
    const store = new RedisStore({ client, namespace: 'acme/relay' });
    try {
      await ready(client);
      const rules = [
        { key: 'rate:user:a:messages', cost: 1, limit: 2, windowMs: 60_000 },
        { key: 'rate:ip:192.0.2.1:messages', cost: 1, limit: 5, windowMs: 3_600_000 },
      ];
      assert.deepEqual((await store.consume(rules, T)).remaining, [1, 4]);
      assert.deepEqual((await store.consume(rules, T)).remaining, [0, 3]);
      assert.equal((await store.consume(rules, T)).blockedBy, 0);
      const failure = { counterKey: 'f', lockKey: 'l', threshold: 1, windowMs: 60_000, cooldownMs: 60_000 };
      assert.deepEqual(
        await store.recordFailure([failure, { ...failure, counterKey: 'g', lockKey: 'm' }], T),
        [true, true],
      );
      assert.equal((await store.lockRemaining(['l', 'm', 'n'])).filter((ms) => ms > 0).length, 2);
      const usage = { counts: { messages: 1 }, distinct: ['192.0.2.1'], ttlMs: 60_000 };
      await store.addUsage([
        { bucket: 'usage:h:1', user: 'a', ...usage },
        { bucket: 'usage:h:1', user: 'b', ...usage },
      ]);
      assert.deepEqual(
        (await store.readUsage(['usage:h:1'])).map((r) => [r.user, r.counts.messages, r.distinct]),
        [
          ['a', 1, 1],
          ['b', 1, 1],
        ],
      );
      assert.equal(await store.mapPut('abuse:flags', 'a', 'x', 60_000, T, true), true);
      assert.deepEqual(
        (await store.mapEntries('abuse:flags', T)).map((e) => e.field),
        ['a'],
      );
    } finally {
      await store.close();
    }
  });

  it('refuses a database other than 0', () => {
    assert.throws(() => createRedisClient(config(cluster.nodes, { mode: 'cluster', db: 1 })), {
      code: 'SLUICE_ERR_CONFIG_INVALID',
    });
  });
});

describe('createRedisClient in sentinel mode', () => {
  // A real master, a real replica and a real Sentinel (quorum 1) on loopback.
  let master: RedisServerHandle;
  let replica: RedisServerHandle;
  let sentinel: RedisSentinelHandle;
  const NAME = 'sluice-test';

  async function info(node: string[], section: string): Promise<string> {
    const client = await ready(createRedisClient(config(node)) as Redis);
    try {
      return String(await client.info(section));
    } finally {
      client.disconnect();
    }
  }

  before(async () => {
    master = await startRedisServer();
    replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
    await waitFor('the replica to sync', async () =>
      (await info(replica.nodes, 'replication')).includes('master_link_status:up'),
    );
    sentinel = await startRedisSentinel(NAME, master.port);
    // the sentinel finds the replica through the master's INFO and then talks to it
    const admin = await ready(createRedisClient(config(sentinel.nodes)) as Redis);
    try {
      await waitFor('the sentinel to know the replica', async () => {
        const replicas = (await admin.call('SENTINEL', 'REPLICAS', NAME)) as string[][];
        return replicas.some((fields) => {
          const flags = fields[fields.indexOf('flags') + 1] ?? '';
          return fields.includes(String(replica.port)) && flags === 'slave';
        });
      });
    } finally {
      admin.disconnect();
    }
  });
  after(async () => {
    await sentinel?.stop();
    await replica?.stop();
    await master?.stop();
  });

  it('finds the master through the sentinel, and the new one after a failover', async () => {
    const client = createRedisClient(config(sentinel.nodes, { mode: 'sentinel', sentinelName: NAME }));
    const store = new RedisStore({ client, namespace: 'sentinel' });
    try {
      await ready(client);
      const rules = [{ key: 'rate:user:a:messages', cost: 1, limit: 100, windowMs: 60_000 }];
      assert.deepEqual((await store.consume(rules, T)).remaining, [99]);
      assert.match(await info(master.nodes, 'replication'), /role:master/);

      const admin = await ready(createRedisClient(config(sentinel.nodes)) as Redis);
      try {
        assert.equal(await admin.call('SENTINEL', 'FAILOVER', NAME), 'OK');
        await waitFor('the replica to become the master', async () => {
          const [, port] = (await admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME)) as string[];
          return port === String(replica.port);
        });
      } finally {
        admin.disconnect();
      }
      // The old master is made a replica (READONLY): the client reconnects through the
      // sentinel. A call may fail while it switches (the relay then falls back to memory).
      let remaining: number[] = [];
      await waitFor('a write to reach the new master', async () => {
        remaining = (await store.consume(rules, T)).remaining;
        return true;
      });
      assert.equal(remaining.length, 1);
      assert.ok((remaining[0] ?? 100) < 99, 'the count written before the failover is still there');
      assert.match(await info(replica.nodes, 'replication'), /role:master/);
      const onNewMaster = (await ready(createRedisClient(config(replica.nodes)) as Redis)) as Redis;
      try {
        // the client may have written through the old master just before it became a
        // replica: what it wrote reaches the new master by replication, a moment later
        await waitFor(
          'the keys on the new master',
          async () => (await scan(onNewMaster, 'sluice:{sentinel}:*')).length > 0,
        );
      } finally {
        onNewMaster.disconnect();
      }
    } finally {
      await client.quit().catch(() => client.disconnect());
    }
  });

  it('refuses sentinel mode without the master name', () => {
    assert.throws(() => createRedisClient(config(['127.0.0.1:26379'], { mode: 'sentinel' })), {
      code: 'SLUICE_ERR_CONFIG_INVALID',
    });
  });
});
