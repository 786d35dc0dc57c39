import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { DnsblResolver } from './resolver.ts';

// A real DNS server on loopback; the resolver talks to it over UDP.
describe('DnsblResolver', () => {
  let dns: TestDnsServer;
  let resolver: DnsblResolver;
  before(async () => {
    dns = await startDnsServer();
    resolver = new DnsblResolver({ servers: [dns.address], timeoutMs: 200 });
  });
  after(() => dns.close());

  it('returns the addresses and the smallest TTL of the answer', async () => {
    dns.setA('4.3.2.1.bl.example', ['127.0.0.4', '127.0.0.2'], 900);
    const result = await resolver.lookup('4.3.2.1.bl.example');
    assert.equal(result.kind, 'answer');
    assert.ok(result.kind === 'answer');
    assert.deepEqual(result.addresses.toSorted(), ['127.0.0.2', '127.0.0.4']);
    assert.equal(result.ttlSeconds, 900);
  });

  it('reports NXDOMAIN and a name without A records as nxdomain', async () => {
    assert.deepEqual(await resolver.lookup('5.3.2.1.bl.example'), { kind: 'nxdomain' });
    dns.setMx('6.3.2.1.bl.example', [{ exchange: 'mx.example', priority: 10 }]);
    assert.deepEqual(await resolver.lookup('6.3.2.1.bl.example'), { kind: 'nxdomain' });
  });

  it('reports SERVFAIL and REFUSED as failures with their reason', async () => {
    dns.setBehaviour('7.3.2.1.bl.example', 'servfail');
    dns.setBehaviour('8.3.2.1.bl.example', 'refused');
    assert.deepEqual(await resolver.lookup('7.3.2.1.bl.example'), { kind: 'failure', reason: 'servfail' });
    assert.deepEqual(await resolver.lookup('8.3.2.1.bl.example'), { kind: 'failure', reason: 'refused' });
  });

  it('gives up after timeoutMs when the server never answers', async () => {
    dns.setBehaviour('9.3.2.1.bl.example', 'drop');
    assert.deepEqual(await resolver.lookup('9.3.2.1.bl.example'), { kind: 'failure', reason: 'timeout' });
    assert.equal(dns.queries('9.3.2.1.bl.example'), 1);
  });

  it('refuses a timeout that is not positive', () => {
    assert.throws(() => new DnsblResolver({ servers: [], timeoutMs: 0 }), RangeError);
  });
});
