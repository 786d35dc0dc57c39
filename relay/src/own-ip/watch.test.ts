// The own-IP watch in a real relay against a real DNS server on loopback: the gauge per
// zone, one log line per change, the /readyz detail, and a DNS question every round.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, startTestRelay, type TestDnsServer, type TestRelay } from '../testing/index.ts';

describe('own-IP blacklist watch', () => {
  let dns: TestDnsServer;
  let t: TestRelay;
  const LISTED = '10.2.0.192.bl.test'; // 192.0.2.10 in bl.test

  before(async () => {
    dns = await startDnsServer();
    dns.setA(LISTED, ['127.0.0.2'], 3600);
    t = await startTestRelay({
      config: {
        // client checks stay off; the watch uses the zones and resolvers all the same
        dnsbl: {
          enabled: false,
          resolvers: [dns.address],
          timeoutMs: 500,
          zones: [{ zone: 'bl.test' }, { zone: 'zen.test' }],
        },
        ownIpWatch: { ips: ['192.0.2.10', '192.0.2.11'], intervalSeconds: 3600 },
      },
    });
  });
  after(async () => {
    await t?.close();
    await dns?.close();
  });

  async function gauges(): Promise<Record<string, number>> {
    const m = await t.relay.metrics.registry.getSingleMetric('sluice_own_ip_listed')?.get();
    return Object.fromEntries((m?.values ?? []).map((v) => [String(v.labels.zone), v.value]));
  }
  async function readyDetail(): Promise<{ status: number; detail: string | undefined }> {
    const res = await fetch(`http://127.0.0.1:${t.relay.adminPort}/readyz`);
    const body = (await res.json()) as { checks: Array<{ name: string; detail?: string }> };
    return { status: res.status, detail: body.checks.find((c) => c.name === 'own_ip')?.detail };
  }

  it('finds a listed egress address: gauge 1 for its zone, a log line, /readyz detail', async () => {
    await t.relay.ownIp?.checkNow();
    assert.deepEqual(await gauges(), { 'bl.test': 1, 'zen.test': 0 });
    const events = t.logs.events('own_ip_listed');
    assert.deepEqual(
      events.map((e) => [e.ip, e.zone, e.code]),
      [['192.0.2.10', 'bl.test', '127.0.0.2']],
    );
    assert.deepEqual(await readyDetail(), {
      status: 200,
      detail: '192.0.2.10 listed in bl.test (127.0.0.2)',
    });
  });

  it('asks DNS every round (no cache) and logs nothing while nothing changes', async () => {
    const asked = dns.queries(LISTED);
    await t.relay.ownIp?.checkNow();
    await t.relay.ownIp?.checkNow();
    assert.equal(dns.queries(LISTED), asked + 2);
    assert.equal(t.logs.events('own_ip_listed').length, 1);
  });

  it('keeps the last answer while a zone fails or answers with an error code', async () => {
    dns.setBehaviour(LISTED, 'servfail');
    dns.setA('11.2.0.192.zen.test', ['127.255.255.254']); // Spamhaus: "public resolver", not a listing
    await t.relay.ownIp?.checkNow();
    assert.deepEqual(await gauges(), { 'bl.test': 1, 'zen.test': 0 });
    assert.equal(t.logs.events('own_ip_delisted').length, 0);
    assert.equal(
      (await readyDetail()).detail,
      '192.0.2.10 listed in bl.test (127.0.0.2) as last seen, now: the lookup failed; ' +
        'unknown: 192.0.2.11 in zen.test: the zone answered with an error code',
    );
    const checks = await t.relay.metrics.registry.getSingleMetricAsString('sluice_own_ip_checks_total');
    assert.match(checks, /zone="bl.test",result="failure"} 1/);
    assert.match(checks, /zone="zen.test",result="error"} 1/);
  });

  it('reports the delisting: gauge 0 and one log line', async () => {
    dns.remove(LISTED);
    dns.remove('11.2.0.192.zen.test');
    await t.relay.ownIp?.checkNow();
    assert.deepEqual(await gauges(), { 'bl.test': 0, 'zen.test': 0 });
    assert.deepEqual(
      t.logs.events('own_ip_delisted').map((e) => [e.ip, e.zone]),
      [['192.0.2.10', 'bl.test']],
    );
    assert.equal((await readyDetail()).detail, '2 address(es) clear in 2 zone(s)');
  });
});
