// Relay pods scale out, the rules do not: two relays sharing one real redis-server
// enforce one rate limit and one AUTH lockout between them, share DNSBL answers (one
// DNS query for both), and keep relaying on local state while Redis is down.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  type RedisServerHandle,
  startDnsServer,
  startRedisServer,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  testUser,
  waitFor,
} from '../src/testing/index.ts';

const ZONE = 'bl.test';
const LISTED = '127.0.0.1';

function sharedConfig(redis: RedisServerHandle, namespace: string, extra: Record<string, unknown> = {}) {
  return {
    listeners: [PLAIN_LISTENER],
    auth: { allowPlaintext: true },
    state: { backend: 'redis', namespace, redis: { nodes: redis.nodes, commandTimeoutMs: 300 } },
    ...extra,
  };
}

async function send(t: TestRelay, user = 'alice', password = PASSWORD): Promise<number[]> {
  const c = await RawSmtpClient.connect(t.port('plain'));
  const codes = [(await c.greeting()).code];
  if (codes[0] !== 220) return codes;
  await c.ehlo();
  const auth = await c.authPlain(user, password);
  codes.push(auth.code);
  if (auth.code !== 235) {
    await c.quit();
    return codes;
  }
  const replies = await c.sendRaw(
    'alice@example.com',
    ['bob@example.net', 'carol@example.net'],
    'Subject: s\r\n\r\nx\r\n',
  );
  await c.quit();
  return [...codes, ...replies.map((r) => r.code)];
}

describe('two relays sharing one Redis', () => {
  let redis: RedisServerHandle;
  before(async () => {
    redis = await startRedisServer();
  });
  after(() => redis.stop());

  it('enforce one per-user message limit between them', async () => {
    const config = sharedConfig(redis, 'rate', {
      rateLimits: { perUser: [{ what: 'messages', limit: 3, windowSeconds: 3600 }] },
    });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    try {
      assert.equal((await send(a)).at(-1), 250);
      assert.equal((await send(b)).at(-1), 250);
      assert.equal((await send(a)).at(-1), 250);
      const c = await RawSmtpClient.connect(b.port('plain'));
      await c.greeting();
      await c.ehlo();
      await c.authPlain('alice', PASSWORD);
      const refused = await c.command('MAIL FROM:<alice@example.com>');
      assert.equal(refused.code, 451);
      assert.match(
        refused.text,
        /^4\.7\.1 Rate limit reached: 3 messages per hour for this account; try again in \d+ (s|min)$/,
      );
      await c.quit();
      const metrics = await b.relay.metrics.registry.getSingleMetricAsString('sluice_ratelimit_hits_total');
      assert.match(metrics, /scope="user",what="messages"} 1/);
      const rejected = b.logs.events('rejected').find((l) => l.reason === 'rate_limited');
      assert.equal(rejected?.user, 'alice');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('cost one round trip per message in a session, and still hold the limit another relay used up', async () => {
    const config = sharedConfig(redis, 'credit', {
      rateLimits: {
        perUser: [
          { what: 'messages', limit: 5, windowSeconds: 3600 },
          { what: 'recipients', limit: 1000, windowSeconds: 86400 },
        ],
      },
    });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    const consumes = async () => {
      const ops = await a.relay.metrics.registry.getSingleMetric('sluice_state_operations_total')?.get();
      return ops?.values.find((v) => v.labels.op === 'consume')?.value ?? 0;
    };
    try {
      const c = await RawSmtpClient.connect(a.port('plain'));
      await c.greeting();
      await c.ehlo();
      await c.authPlain('alice', PASSWORD);
      const body = 'Subject: s\r\n\r\nx\r\n';
      for (let i = 0; i < 3; i++) {
        assert.equal((await c.sendRaw('alice@example.com', ['bob@example.net'], body)).at(-1)?.code, 250);
      }
      // the first MAIL FROM asks Redis; after that, one consume at the end of each DATA
      // counts message and recipients together (it was two per message: MAIL and DATA)
      assert.equal(await consumes(), 4);
      // meanwhile the other relay uses up the rest of the hour's limit
      assert.equal((await send(b)).at(-1), 250);
      assert.equal((await send(b)).at(-1), 250);
      // this session still believes two are left: MAIL passes, the count at DATA refuses
      const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], body);
      assert.deepEqual(
        replies.map((r) => r.code),
        [250, 250, 354, 451],
      );
      assert.match(replies.at(-1)?.text ?? '', /^4\.7\.1 Rate limit reached: 5 messages per hour/);
      // and the next MAIL FROM asks Redis again, and is refused there
      assert.equal((await c.command('MAIL FROM:<alice@example.com>')).code, 451);
      await c.quit();
      assert.equal(a.logs.events('accepted').length, 3, 'nothing past the limit was queued');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('count recipients across relays and refuse the RCPT past the allowance', async () => {
    const config = sharedConfig(redis, 'rcpt', {
      rateLimits: { perUser: [{ what: 'recipients', limit: 3, windowSeconds: 86400 }] },
    });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    try {
      assert.equal((await send(a)).at(-1), 250, 'two recipients on relay a');
      const c = await RawSmtpClient.connect(b.port('plain'));
      await c.greeting();
      await c.ehlo();
      await c.authPlain('alice', PASSWORD);
      const replies = await c.sendRaw(
        'alice@example.com',
        ['x@example.net', 'y@example.net'],
        'Subject: s\r\n\r\nx\r\n',
      );
      assert.deepEqual(
        replies.map((r) => r.code),
        [250, 250, 451, 354, 250],
      );
      assert.match(replies[2]?.text ?? '', /^4\.7\.1 Rate limit reached: 3 recipients per day/);
      await c.quit();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('lock a user out on both relays after repeated failures on one', async () => {
    const config = sharedConfig(redis, 'lock', {
      authLockout: { maxFailuresPerUser: 3, maxFailuresPerIp: 100, cooldownSeconds: 600 },
    });
    const a = await startTestRelay({ config, users: [await testUser('alice'), await testUser('bob')] });
    const b = await startTestRelay({ config, users: [await testUser('alice'), await testUser('bob')] });
    try {
      for (let i = 0; i < 3; i++) assert.deepEqual(await send(a, 'alice', 'wrong'), [220, 535]);
      const locked = await RawSmtpClient.connect(b.port('plain'));
      await locked.greeting();
      await locked.ehlo();
      const r = await locked.authPlain('alice', PASSWORD);
      assert.equal(r.code, 454, 'the right password is refused while locked, on the other relay');
      assert.match(r.text, /^4\.7\.0 Too many failed authentications; try again in (\d+ s|\d+ min)$/);
      await locked.quit();
      assert.equal((await send(b, 'bob')).at(-1), 250, 'another user from the same IP is not locked');
      assert.equal(a.logs.events('auth_lockout').length, 1, 'one lockout event');
      assert.equal(a.logs.events('auth_lockout')[0]?.scope, 'user');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps a name given to AUTH out of the shared state: keys hold a digest of it', async () => {
    const config = sharedConfig(redis, 'digest', {
      authLockout: { maxFailuresPerUser: 2, maxFailuresPerIp: 100, cooldownSeconds: 600 },
    });
    const a = await startTestRelay({ config });
    // a password typed into the username field, twice: the user lock engages
    const typed = `correct-horse-battery-staple-${'x'.repeat(300)}`;
    try {
      for (let i = 0; i < 2; i++) assert.deepEqual(await send(a, typed, 'x'), [220, 535]);
      assert.equal(a.logs.events('auth_lockout').length, 1, 'the user lock engaged');
      const redisClient = new Redis({ port: redis.port, lazyConnect: true });
      try {
        await redisClient.connect();
        const keys = await redisClient.keys('*digest*');
        assert.ok(
          keys.some((k) => k.includes('lock:auth:user:')),
          `a user lock key among ${keys.join(', ')}`,
        );
        for (const key of keys) {
          assert.ok(!key.includes('correct-horse'), `${key.slice(0, 80)} holds the typed name`);
          assert.ok(key.length < 120, `${key.slice(0, 80)}… is ${key.length} characters long`);
        }
      } finally {
        redisClient.disconnect();
      }
    } finally {
      await a.close();
    }
  });

  it('lock an IP out after failures for many usernames', async () => {
    const config = sharedConfig(redis, 'lockip', {
      authLockout: { maxFailuresPerUser: 100, maxFailuresPerIp: 4, cooldownSeconds: 600 },
    });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    try {
      for (const name of ['u1', 'u2']) assert.deepEqual(await send(a, name, 'x'), [220, 535]);
      for (const name of ['u3', 'u4']) assert.deepEqual(await send(b, name, 'x'), [220, 535]);
      assert.deepEqual(await send(a, 'alice'), [220, 454]);
      assert.deepEqual(await send(b, 'alice'), [220, 454]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('cap concurrent connections per IP across relays', async () => {
    const config = sharedConfig(redis, 'conn', { rateLimits: { concurrentConnectionsPerIp: 2 } });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    const open: RawSmtpClient[] = [];
    try {
      for (const t of [a, b]) {
        const c = await RawSmtpClient.connect(t.port('plain'));
        assert.equal((await c.greeting()).code, 220);
        open.push(c);
      }
      const third = await RawSmtpClient.connect(a.port('plain'));
      const refused = await third.greeting();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0 /);
      await open.shift()?.quit();
      await waitFor('the slot is released when a client leaves', async () => {
        const c = await RawSmtpClient.connect(b.port('plain'));
        const code = (await c.greeting()).code;
        c.destroy();
        return code === 220;
      });
    } finally {
      for (const c of open) c.destroy();
      await a.close();
      await b.close();
    }
  });
});

describe('DNSBL through shared state', () => {
  let redis: RedisServerHandle;
  let dns: TestDnsServer;
  before(async () => {
    redis = await startRedisServer();
    dns = await startDnsServer();
  });
  after(async () => {
    await redis.stop();
    await dns.close();
  });

  function dnsblConfig(
    namespace: string,
    zone: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ) {
    return sharedConfig(redis, namespace, {
      dnsbl: {
        enabled: true,
        resolvers: [dns.address],
        timeoutMs: 300,
        zones: [
          {
            zone: ZONE,
            listedCodes: ['127.0.0.2-127.0.0.11'],
            lookupUrl: 'https://bl.test/lookup?ip={ip}',
            ...zone,
          },
        ],
        ...extra,
      },
    });
  }

  it('refuses a listed client on both relays with one DNS query between them', async () => {
    dns.setA(`1.0.0.127.${ZONE}`, ['127.0.0.2'], 600);
    const config = dnsblConfig('dnsbl', { message: 'Client host [{ip}] is listed in {zone}; see {url}' });
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    const before = dns.queries(`1.0.0.127.${ZONE}`);
    try {
      for (const t of [a, b]) {
        const c = await RawSmtpClient.connect(t.port('plain'));
        const greeting = await c.greeting();
        assert.equal(greeting.code, 554);
        assert.equal(
          greeting.text,
          `5.7.1 Client host [${LISTED}] is listed in ${ZONE}; see https://bl.test/lookup?ip=${LISTED}`,
        );
        await c.waitClosed();
      }
      assert.equal(dns.queries(`1.0.0.127.${ZONE}`), before + 1, 'relay b found the answer in Redis');
      const metrics = await b.relay.metrics.registry.getSingleMetricAsString('sluice_dnsbl_lookups_total');
      assert.match(
        metrics,
        new RegExp(`zone="${ZONE.replace('.', '\\.')}",result="listed",tier="shared"} 1`),
      );
    } finally {
      await a.close();
      await b.close();
      dns.remove(`1.0.0.127.${ZONE}`);
    }
  });

  it('checks after AUTH when configured, refusing MAIL FROM with 550 5.7.1', async () => {
    dns.setA(`1.0.0.127.${ZONE}`, ['127.0.0.3'], 600);
    const t = await startTestRelay({ config: dnsblConfig('dnsbl-auth', {}, { checkAt: 'auth' }) });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      assert.equal((await c.greeting()).code, 220);
      await c.ehlo();
      assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
      const mail = await c.command('MAIL FROM:<alice@example.com>');
      assert.equal(mail.code, 550);
      assert.match(mail.text, /^5\.7\.1 Client host \[127\.0\.0\.1\] is listed in bl\.test/);
      await c.quit();
    } finally {
      await t.close();
      dns.remove(`1.0.0.127.${ZONE}`);
    }
  });

  it('never treats an error answer as a listing, and disables the zone for a while', async () => {
    dns.setA(`1.0.0.127.${ZONE}`, ['127.255.255.254'], 600);
    const t = await startTestRelay({ config: dnsblConfig('dnsbl-err', {}) });
    const before = dns.queries(`1.0.0.127.${ZONE}`);
    try {
      assert.equal((await send(t)).at(-1), 250);
      assert.equal((await send(t)).at(-1), 250);
      assert.equal(dns.queries(`1.0.0.127.${ZONE}`), before + 1, 'the disabled zone is not queried again');
      assert.equal(t.logs.events('dnsbl_zone_disabled').length, 1);
      const metrics = await t.relay.metrics.registry.getSingleMetricAsString(
        'sluice_dnsbl_zone_disabled_total',
      );
      assert.match(metrics, /} 1/);
    } finally {
      await t.close();
      dns.remove(`1.0.0.127.${ZONE}`);
    }
  });

  it('lets mail through when a zone times out, or answers 421 4.7.1 when the policy says tempfail', async () => {
    dns.setBehaviour(`1.0.0.127.${ZONE}`, 'drop');
    const open = await startTestRelay({ config: dnsblConfig('dnsbl-to', {}) });
    const strict = await startTestRelay({ config: dnsblConfig('dnsbl-to2', {}, { onError: 'tempfail' }) });
    try {
      assert.equal((await send(open)).at(-1), 250);
      const c = await RawSmtpClient.connect(strict.port('plain'));
      const greeting = await c.greeting();
      assert.equal(greeting.code, 421);
      assert.match(greeting.text, /^4\.7\.1 .*Cannot check your address against bl\.test now/);
    } finally {
      await open.close();
      await strict.close();
      dns.remove(`1.0.0.127.${ZONE}`);
    }
  });
});

describe('Redis down', () => {
  it('keeps mail flowing on local state, says so in /readyz and metrics, and recovers', async () => {
    const redis = await startRedisServer();
    const t = await startTestRelay({ config: sharedConfig(redis, 'down') });
    const ready = async () =>
      (await (await fetch(`http://127.0.0.1:${t.relay.adminPort}/readyz`)).json()) as {
        checks: Array<{ name: string; detail: string }>;
      };
    const shared = async () =>
      (await t.relay.metrics.registry.getSingleMetricAsString('sluice_state_shared')).trim().endsWith(' 1');
    try {
      assert.equal((await send(t)).at(-1), 250);
      assert.ok(await shared());
      await redis.kill();
      for (let i = 0; i < 3; i++) assert.equal((await send(t)).at(-1), 250, 'mail flows while Redis is down');
      assert.equal(await shared(), false);
      const detail = (await ready()).checks.find((c) => c.name === 'state')?.detail ?? '';
      assert.match(detail, /local/i);
      assert.equal(t.logs.events('shared_state_down').length, 1, 'logged once, not per message');
      const upsBefore = t.logs.events('shared_state_up').length;
      await redis.restart();
      await waitFor('shared state is used again', shared, { timeoutMs: 15_000 });
      assert.equal((await send(t)).at(-1), 250);
      assert.equal(t.logs.events('shared_state_up').length, upsBefore + 1);
    } finally {
      await t.close();
      await redis.stop();
    }
  });

  it('answers 4xx instead when the policy says tempfail', async () => {
    const redis = await startRedisServer();
    const t = await startTestRelay({
      config: sharedConfig(redis, 'down2', {
        state: {
          backend: 'redis',
          namespace: 'down2',
          onSharedStateDown: 'tempfail',
          redis: { nodes: redis.nodes, commandTimeoutMs: 300 },
        },
      }),
    });
    try {
      await redis.kill();
      const c = await RawSmtpClient.connect(t.port('plain'));
      const greeting = await c.greeting();
      assert.equal(greeting.code, 421);
      assert.match(greeting.text, /^4\.3\.0 /);
      await c.waitClosed();
    } finally {
      await t.close();
      await redis.stop();
    }
  });
});
