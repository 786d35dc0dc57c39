import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { DEFAULT_DNSBL_ZONES, type DnsblZone } from '../config/schema.ts';
import type { StateStore } from '../state/store.ts';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { DnsblChecker, type DnsblCheckerOptions, type DnsblObserver, replyMessage } from './checker.ts';
import { dnsblQueryName } from './query-name.ts';
import { DnsblResolver } from './resolver.ts';

// Real DNS: a server on loopback UDP and the real DnsblResolver. The clock is injected, so
// TTLs and backoffs expire when a test says so.

const T0 = Date.UTC(2030, 0, 1);
const XBL = DEFAULT_DNSBL_ZONES[0] as DnsblZone;
const TIMEOUT_MS = 200;

function manualClock() {
  const clock = { t: T0, now: () => clock.t, advance: (seconds: number) => (clock.t += seconds * 1000) };
  return clock;
}
type Clock = ReturnType<typeof manualClock>;

/**
 * Stands in for the shared StateStore: only getCache/setCache, over a Map, counting calls and
 * honouring ttlMs on the test clock. The real memory and Redis backends are checked by their
 * own contract tests in relay/src/state.
 */
class FakeSharedCache implements Pick<StateStore, 'getCache' | 'setCache'> {
  readonly #clock: Clock;
  readonly #entries = new Map<string, { value: string; expiresAt: number }>();
  gets = 0;
  sets: Array<{ key: string; value: string; ttlMs: number }> = [];
  failing = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async getCache(key: string): Promise<string | null> {
    this.gets++;
    if (this.failing) throw new Error('shared state unreachable');
    const entry = this.#entries.get(key);
    return entry !== undefined && this.#clock.now() < entry.expiresAt ? entry.value : null;
  }

  async setCache(key: string, value: string, ttlMs: number): Promise<void> {
    this.sets.push({ key, value, ttlMs });
    if (this.failing) throw new Error('shared state unreachable');
    this.#entries.set(key, { value, expiresAt: this.#clock.now() + ttlMs });
  }
}

function recordingLogger() {
  const lines: Array<{ level: 'info' | 'warn'; obj: Record<string, unknown>; msg?: string }> = [];
  return {
    lines,
    events: (event: string) => lines.filter((l) => l.obj.event === event),
    info: (obj: object, msg?: string) =>
      lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj: object, msg?: string) =>
      lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
  };
}

function recordingObserver() {
  const lookups: Array<[string, string, string]> = [];
  const disabled: Array<[string, string]> = [];
  const observer: DnsblObserver = {
    lookup: (zone, result, tier, seconds) => {
      assert.ok(seconds >= 0);
      lookups.push([zone, result, tier]);
    },
    zoneDisabled: (zone, code) => disabled.push([zone, code]),
  };
  return { observer, lookups, disabled };
}

describe('DnsblChecker', () => {
  let dns: TestDnsServer;
  let clock: Clock;
  let store: FakeSharedCache;
  let logger: ReturnType<typeof recordingLogger>;
  let seen: ReturnType<typeof recordingObserver>;

  beforeEach(async () => {
    dns = await startDnsServer();
    clock = manualClock();
    store = new FakeSharedCache(clock);
    logger = recordingLogger();
    seen = recordingObserver();
  });
  afterEach(() => dns.close());

  function checker(overrides: Partial<DnsblCheckerOptions> = {}): DnsblChecker {
    return new DnsblChecker({
      zones: [XBL],
      resolver: new DnsblResolver({ servers: [dns.address], timeoutMs: TIMEOUT_MS }),
      store,
      minTtlSeconds: 60,
      maxTtlSeconds: 3600,
      errorBackoffSeconds: 600,
      now: clock.now,
      observer: seen.observer,
      logger,
      ...overrides,
    });
  }
  const xbl = (ip: string) => dnsblQueryName(ip, XBL.zone);

  describe('verdicts', () => {
    it('lists an IP the XBL lists, naming the list, the IP and the lookup URL', async () => {
      dns.setA(xbl('192.0.2.10'), ['127.0.0.4']);
      assert.deepEqual(await checker().check('192.0.2.10'), {
        listed: [
          {
            zone: 'xbl.spamhaus.org',
            code: '127.0.0.4',
            action: 'reject',
            message:
              'Client host [192.0.2.10] is listed in the Spamhaus XBL; see https://check.spamhaus.org/listed/?searchterm=192.0.2.10',
          },
        ],
        failed: [],
      });
    });

    it('names an IPv4 client on a dual-stack listener by its IPv4 address', async () => {
      dns.setA(xbl('192.0.2.11'), ['127.0.0.5']);
      const verdict = await checker().check('::ffff:192.0.2.11');
      assert.equal(verdict.listed[0]?.message.includes('[192.0.2.11]'), true);
      assert.equal(dns.queries(xbl('192.0.2.11')), 1);
    });

    it('fills {zone}, and {url} with the zone when there is no lookup URL', async () => {
      const zone: DnsblZone = {
        zone: 'bl.example',
        listedCodes: ['127.0.0.2'],
        action: 'tag',
        message: '[{ip}] in {zone} ({url})',
      };
      dns.setA(dnsblQueryName('192.0.2.12', 'bl.example'), ['127.0.0.2']);
      const verdict = await checker({ zones: [zone] }).check('192.0.2.12');
      assert.deepEqual(verdict.listed, [
        {
          zone: 'bl.example',
          code: '127.0.0.2',
          action: 'tag',
          message: '[192.0.2.12] in bl.example (bl.example)',
        },
      ]);
    });

    it('lets a clear IP (NXDOMAIN) through', async () => {
      assert.deepEqual(await checker().check('192.0.2.13'), { listed: [], failed: [] });
      assert.equal(dns.queries(xbl('192.0.2.13')), 1);
    });

    it('does not list an answer outside the zone filter (127.0.0.2 on the XBL)', async () => {
      dns.setA(xbl('192.0.2.14'), ['127.0.0.2']);
      const c = checker();
      assert.deepEqual(await c.check('192.0.2.14'), { listed: [], failed: [] });
      // Not an error either: the zone stays in use.
      await c.check('192.0.2.15');
      assert.equal(dns.queries(xbl('192.0.2.15')), 1);
      assert.deepEqual(seen.disabled, []);
    });

    it('queries an IPv6 client in nibble format', async () => {
      const name = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.xbl.spamhaus.org';
      dns.setA(name, ['127.0.0.4']);
      const verdict = await checker().check('2001:db8::1');
      assert.equal(dns.queries(name), 1);
      assert.equal(verdict.listed[0]?.code, '127.0.0.4');
      assert.ok(verdict.listed[0]?.message.includes('[2001:db8::1]'));
      assert.ok(verdict.listed[0]?.message.endsWith('searchterm=2001:db8::1'));
    });

    it('rejects an address that is not an IP', async () => {
      await assert.rejects(checker().check('not-an-ip'), TypeError);
      assert.equal(dns.queries(), 0);
    });
  });

  describe('error answers', () => {
    it('treats a Spamhaus refusal as no listing and skips the zone until the backoff ends', async () => {
      dns.setA(xbl('192.0.2.20'), ['127.255.255.254']);
      const c = checker();
      assert.deepEqual(await c.check('192.0.2.20'), { listed: [], failed: [] });
      assert.deepEqual(seen.disabled, [['xbl.spamhaus.org', '127.255.255.254']]);
      const warns = logger.events('dnsbl_zone_disabled');
      assert.equal(warns.length, 1);
      assert.equal(warns[0]?.level, 'warn');
      assert.deepEqual(warns[0]?.obj, {
        event: 'dnsbl_zone_disabled',
        zone: 'xbl.spamhaus.org',
        code: '127.255.255.254',
        until: new Date(T0 + 600_000).toISOString(),
      });

      // Skipped: no query at all, for this IP or any other, and not reported as a failure.
      const queriesBefore = dns.queries();
      clock.advance(599);
      assert.deepEqual(await c.check('192.0.2.21'), { listed: [], failed: [] });
      assert.deepEqual(await c.check('192.0.2.20'), { listed: [], failed: [] });
      assert.equal(dns.queries(), queriesBefore);
      assert.deepEqual(seen.lookups.slice(-2), [
        ['xbl.spamhaus.org', 'skipped', 'local'],
        ['xbl.spamhaus.org', 'skipped', 'local'],
      ]);

      // After the backoff the zone is asked again, and the refusal was never cached for the IP.
      clock.advance(1);
      dns.setA(xbl('192.0.2.20'), ['127.0.0.4']);
      const verdict = await c.check('192.0.2.20');
      assert.equal(verdict.listed[0]?.code, '127.0.0.4');
      assert.equal(dns.queries(xbl('192.0.2.20')), 2);
      assert.equal(seen.disabled.length, 1);
      assert.equal(logger.events('dnsbl_zone_disabled').length, 1);
      assert.equal(logger.events('dnsbl_zone_enabled').length, 1);
      assert.deepEqual(store.sets.length, 1); // only the real listing was shared
    });

    it('treats an answer outside 127.0.0.0/8 as an error, never a listing', async () => {
      dns.setA(xbl('192.0.2.22'), ['10.0.0.1']);
      const c = checker();
      assert.deepEqual(await c.check('192.0.2.22'), { listed: [], failed: [] });
      assert.deepEqual(seen.disabled, [['xbl.spamhaus.org', '10.0.0.1']]);
      assert.deepEqual(seen.lookups, [['xbl.spamhaus.org', 'error', 'dns']]);
      await c.check('192.0.2.23');
      assert.equal(dns.queries(xbl('192.0.2.23')), 0);
    });

    it('disables the zone once when several lookups bring the refusal at the same time', async () => {
      const ips = ['192.0.2.24', '192.0.2.25', '192.0.2.26', '192.0.2.27'];
      for (const ip of ips) dns.setA(xbl(ip), ['127.255.255.255']);
      const c = checker();
      const all = await Promise.all(ips.map((ip) => c.check(ip)));
      assert.ok(all.every((v) => v.listed.length === 0 && v.failed.length === 0));
      assert.equal(dns.queries(), ips.length, 'all four were in flight before the first answer');
      assert.deepEqual(seen.disabled, [['xbl.spamhaus.org', '127.255.255.255']]);
      assert.equal(logger.events('dnsbl_zone_disabled').length, 1);
    });
  });

  describe('failures', () => {
    it('reports a timeout as a failed zone and does not cache it', async () => {
      dns.setBehaviour(xbl('192.0.2.30'), 'drop');
      const c = checker();
      assert.deepEqual(await c.check('192.0.2.30'), {
        listed: [],
        failed: [{ zone: 'xbl.spamhaus.org', reason: 'timeout' }],
      });
      assert.deepEqual(seen.lookups, [['xbl.spamhaus.org', 'failure', 'dns']]);
      assert.equal(store.sets.length, 0);

      // The next check asks again, and a recovered server is believed at once.
      dns.remove(xbl('192.0.2.30'));
      dns.setA(xbl('192.0.2.30'), ['127.0.0.6']);
      const verdict = await c.check('192.0.2.30');
      assert.equal(verdict.listed[0]?.code, '127.0.0.6');
      assert.deepEqual(verdict.failed, []);
      assert.equal(dns.queries(xbl('192.0.2.30')), 2);
      assert.deepEqual(seen.disabled, []);
    });

    it('reports SERVFAIL and REFUSED with their reasons', async () => {
      dns.setBehaviour(xbl('192.0.2.31'), 'servfail');
      dns.setBehaviour(xbl('192.0.2.32'), 'refused');
      const c = checker();
      assert.deepEqual((await c.check('192.0.2.31')).failed, [
        { zone: 'xbl.spamhaus.org', reason: 'servfail' },
      ]);
      assert.deepEqual((await c.check('192.0.2.32')).failed, [
        { zone: 'xbl.spamhaus.org', reason: 'refused' },
      ]);
      await c.check('192.0.2.31');
      assert.equal(dns.queries(xbl('192.0.2.31')), 2);
    });

    it('keeps checking through DNS when the shared store is down', async () => {
      dns.setA(xbl('192.0.2.33'), ['127.0.0.4']);
      store.failing = true;
      const c = checker();
      assert.equal((await c.check('192.0.2.33')).listed.length, 1);
      // Still remembered in this process.
      assert.equal((await c.check('192.0.2.33')).listed.length, 1);
      assert.equal(dns.queries(xbl('192.0.2.33')), 1);
    });
  });

  describe('caching', () => {
    it('answers a repeated listed check from the cache until the TTL runs out', async () => {
      dns.setA(xbl('192.0.2.40'), ['127.0.0.4'], 300);
      const c = checker();
      await c.check('192.0.2.40');
      clock.advance(299);
      assert.equal((await c.check('192.0.2.40')).listed.length, 1);
      assert.equal(dns.queries(xbl('192.0.2.40')), 1);
      assert.deepEqual(seen.lookups, [
        ['xbl.spamhaus.org', 'listed', 'dns'],
        ['xbl.spamhaus.org', 'listed', 'local'],
      ]);

      // Delisted meanwhile: once the TTL is over the new answer counts.
      dns.remove(xbl('192.0.2.40'));
      clock.advance(1);
      assert.deepEqual(await c.check('192.0.2.40'), { listed: [], failed: [] });
      assert.equal(dns.queries(xbl('192.0.2.40')), 2);
    });

    it('caches a clear (NXDOMAIN) answer for minTtlSeconds', async () => {
      const c = checker();
      await c.check('192.0.2.41');
      clock.advance(59);
      await c.check('192.0.2.41');
      assert.equal(dns.queries(xbl('192.0.2.41')), 1);
      assert.equal(store.sets[0]?.ttlMs, 60_000);

      dns.setA(xbl('192.0.2.41'), ['127.0.0.4']);
      clock.advance(1);
      assert.equal((await c.check('192.0.2.41')).listed.length, 1);
      assert.equal(dns.queries(xbl('192.0.2.41')), 2);
    });

    it('keeps a short TTL for at least minTtlSeconds', async () => {
      dns.setA(xbl('192.0.2.42'), ['127.0.0.4'], 5);
      const c = checker();
      await c.check('192.0.2.42');
      clock.advance(59);
      await c.check('192.0.2.42');
      assert.equal(dns.queries(xbl('192.0.2.42')), 1);
      clock.advance(1);
      await c.check('192.0.2.42');
      assert.equal(dns.queries(xbl('192.0.2.42')), 2);
      assert.equal(store.sets[0]?.ttlMs, 60_000);
    });

    it('keeps a long TTL for at most maxTtlSeconds', async () => {
      dns.setA(xbl('192.0.2.43'), ['127.0.0.4'], 86_400);
      const c = checker();
      await c.check('192.0.2.43');
      clock.advance(3599);
      await c.check('192.0.2.43');
      assert.equal(dns.queries(xbl('192.0.2.43')), 1);
      clock.advance(1);
      await c.check('192.0.2.43');
      assert.equal(dns.queries(xbl('192.0.2.43')), 2);
      assert.equal(store.sets[0]?.ttlMs, 3_600_000);
    });

    it('caches nothing when both the TTL and minTtlSeconds are 0', async () => {
      dns.setA(xbl('192.0.2.44'), ['127.0.0.4'], 0);
      const c = checker({ minTtlSeconds: 0 });
      await c.check('192.0.2.44');
      await c.check('192.0.2.44');
      assert.equal(dns.queries(xbl('192.0.2.44')), 2);
      assert.equal(store.sets.length, 0);
    });

    it('shares answers between pods: the second pod sends no DNS query and keeps the remaining lifetime', async () => {
      dns.setA(xbl('192.0.2.50'), ['127.0.0.4'], 300);
      dns.setA(xbl('192.0.2.51'), ['127.0.0.2'], 300);
      const podA = checker();
      const podB = checker();
      await podA.check('192.0.2.50');
      await podA.check('192.0.2.51');
      await podA.check('192.0.2.52'); // NXDOMAIN
      const queriesByA = dns.queries();
      assert.equal(queriesByA, 3);

      clock.advance(50);
      assert.deepEqual((await podB.check('192.0.2.50')).listed[0]?.code, '127.0.0.4');
      assert.deepEqual(await podB.check('192.0.2.51'), { listed: [], failed: [] });
      assert.deepEqual(await podB.check('192.0.2.52'), { listed: [], failed: [] });
      assert.equal(dns.queries(), queriesByA, 'pod B found every answer in the shared store');
      assert.deepEqual(seen.lookups.slice(-3), [
        ['xbl.spamhaus.org', 'listed', 'shared'],
        ['xbl.spamhaus.org', 'clear', 'shared'],
        ['xbl.spamhaus.org', 'clear', 'shared'],
      ]);

      // Pod B now answers from its own memory, without the store...
      const gets = store.gets;
      clock.advance(249);
      assert.equal((await podB.check('192.0.2.50')).listed.length, 1);
      assert.equal(store.gets, gets);
      // ...until the expiry pod A computed (T0 + 300 s), not 300 s after pod B read it.
      clock.advance(1);
      await podB.check('192.0.2.50');
      assert.equal(dns.queries(xbl('192.0.2.50')), 2);
    });

    it('coalesces 50 concurrent checks of one IP into one DNS query', async () => {
      dns.setA(xbl('192.0.2.60'), ['127.0.0.4']);
      const c = checker();
      const verdicts = await Promise.all(Array.from({ length: 50 }, () => c.check('192.0.2.60')));
      assert.equal(dns.queries(xbl('192.0.2.60')), 1);
      assert.equal(store.gets, 1);
      assert.ok(verdicts.every((v) => v.listed[0]?.code === '127.0.0.4'));
      assert.equal(seen.lookups.length, 50);
    });

    it('coalesces concurrent failures too, and still does not cache them', async () => {
      dns.setBehaviour(xbl('192.0.2.61'), 'servfail');
      const c = checker();
      const verdicts = await Promise.all(Array.from({ length: 10 }, () => c.check('192.0.2.61')));
      assert.ok(verdicts.every((v) => v.failed[0]?.reason === 'servfail'));
      assert.equal(dns.queries(xbl('192.0.2.61')), 1);
      await c.check('192.0.2.61');
      assert.equal(dns.queries(xbl('192.0.2.61')), 2);
    });

    it('evicts the least recently used answers beyond localCacheSize', async () => {
      const c = checker({
        localCacheSize: 2,
        store: { getCache: async () => null, setCache: async () => {} },
      });
      await c.check('192.0.2.70');
      await c.check('192.0.2.71');
      await c.check('192.0.2.72');
      await c.check('192.0.2.72');
      await c.check('192.0.2.70');
      assert.equal(dns.queries(xbl('192.0.2.72')), 1);
      assert.equal(dns.queries(xbl('192.0.2.70')), 2);
    });
  });

  describe('several zones', () => {
    const zones: DnsblZone[] = [
      { zone: 'a.bl.example', listedCodes: ['127.0.0.2'], action: 'reject', message: '{zone}' },
      { zone: 'b.bl.example', listedCodes: ['127.0.0.2-127.0.0.11'], action: 'tag', message: '{zone}' },
      { zone: 'c.bl.example', listedCodes: ['127.0.0.2'], action: 'reject', message: '{zone}' },
      { zone: 'd.bl.example', listedCodes: ['127.0.0.2'], action: 'reject', message: '{zone}' },
    ];

    it('asks every zone at once and combines their answers in configuration order', async () => {
      const ip = '192.0.2.80';
      dns.setA(dnsblQueryName(ip, 'a.bl.example'), ['127.0.0.2']);
      dns.setA(dnsblQueryName(ip, 'b.bl.example'), ['127.0.0.10']);
      dns.setBehaviour(dnsblQueryName(ip, 'd.bl.example'), 'servfail');
      // The real resolver, watched to see how many lookups overlap.
      const real = new DnsblResolver({ servers: [dns.address], timeoutMs: TIMEOUT_MS });
      let active = 0;
      let peak = 0;
      const watched = {
        lookup: async (name: string) => {
          peak = Math.max(peak, ++active);
          try {
            return await real.lookup(name);
          } finally {
            active--;
          }
        },
      };
      const verdict = await checker({ zones, resolver: watched }).check(ip);
      assert.equal(peak, zones.length);
      assert.deepEqual(verdict, {
        listed: [
          { zone: 'a.bl.example', code: '127.0.0.2', action: 'reject', message: 'a.bl.example' },
          { zone: 'b.bl.example', code: '127.0.0.10', action: 'tag', message: 'b.bl.example' },
        ],
        failed: [{ zone: 'd.bl.example', reason: 'servfail' }],
      });
      assert.deepEqual(seen.lookups.toSorted(), [
        ['a.bl.example', 'listed', 'dns'],
        ['b.bl.example', 'listed', 'dns'],
        ['c.bl.example', 'clear', 'dns'],
        ['d.bl.example', 'failure', 'dns'],
      ]);
    });

    it('disables only the zone that answered with an error', async () => {
      const ip = '192.0.2.81';
      dns.setA(dnsblQueryName(ip, 'a.bl.example'), ['127.255.255.252']);
      dns.setA(dnsblQueryName(ip, 'b.bl.example'), ['127.0.0.3']);
      const c = checker({ zones });
      await c.check(ip);
      const verdict = await c.check('192.0.2.82');
      assert.deepEqual(verdict, { listed: [], failed: [] });
      assert.equal(dns.queries(dnsblQueryName('192.0.2.82', 'a.bl.example')), 0);
      assert.equal(dns.queries(dnsblQueryName('192.0.2.82', 'b.bl.example')), 1);
      assert.deepEqual(seen.disabled, [['a.bl.example', '127.255.255.252']]);
    });
  });
});

describe('replyMessage', () => {
  it('fills every placeholder, and leaves replacement patterns in values alone', () => {
    const zone = {
      zone: 'z.example',
      message: '{ip} {zone} {url} {ip} {other}',
      lookupUrl: 'https://x/?q={ip}&$&',
    };
    assert.equal(
      replyMessage(zone, '192.0.2.1'),
      '192.0.2.1 z.example https://x/?q=192.0.2.1&$& 192.0.2.1 {other}',
    );
  });
});

describe('DnsblChecker options', () => {
  it('refuses a malformed return-code filter when built, not on the first client', () => {
    const base = {
      resolver: { lookup: async () => ({ kind: 'nxdomain' as const }) },
      store: { getCache: async () => null, setCache: async () => {} },
      minTtlSeconds: 60,
      maxTtlSeconds: 3600,
      errorBackoffSeconds: 600,
      logger: recordingLogger(),
    };
    const zone = { ...XBL, listedCodes: ['127.0.0.7-127.0.0.4'] };
    assert.throws(() => new DnsblChecker({ ...base, zones: [zone] }), RangeError);
    assert.throws(
      () => new DnsblChecker({ ...base, zones: [XBL], minTtlSeconds: 10, maxTtlSeconds: 5 }),
      RangeError,
    );
  });
});
