import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type TestDnsServer } from './dns-server.ts';

// Node's own resolver (c-ares) asks the server over UDP, as the relay's code will.
describe('startDnsServer', () => {
  let dns: TestDnsServer;
  let resolver: Resolver;
  before(async () => {
    dns = await startDnsServer();
    resolver = new Resolver({ timeout: 200, tries: 1 });
    resolver.setServers([dns.address]);
  });
  after(() => dns.close());

  const code = async (query: Promise<unknown>): Promise<unknown> => {
    try {
      await query;
      return 'answered';
    } catch (err: unknown) {
      return err instanceof Error && 'code' in err ? err.code : err;
    }
  };

  it('listens on a free loopback port and says so in resolver syntax', () => {
    assert.ok(dns.port > 0);
    assert.equal(dns.address, `127.0.0.1:${dns.port}`);
  });

  it('answers A and AAAA questions with the records and TTL set, by family', async () => {
    dns.setA('host.example', ['192.0.2.1', '192.0.2.2', '2001:db8::5'], 120);
    const v4 = await resolver.resolve4('host.example', { ttl: true });
    assert.deepEqual(
      v4.toSorted((a, b) => a.address.localeCompare(b.address)),
      [
        { address: '192.0.2.1', ttl: 120 },
        { address: '192.0.2.2', ttl: 120 },
      ],
    );
    assert.deepEqual(await resolver.resolve6('host.example', { ttl: true }), [
      { address: '2001:db8::5', ttl: 120 },
    ]);
  });

  it('answers MX questions', async () => {
    dns.setMx('mail.example', [
      { exchange: 'mx2.mail.example', priority: 20 },
      { exchange: 'mx1.mail.example', priority: 10 },
    ]);
    const mx = await resolver.resolveMx('mail.example');
    assert.deepEqual(mx.map((r) => [r.priority, r.exchange]).toSorted(), [
      [10, 'mx1.mail.example'],
      [20, 'mx2.mail.example'],
    ]);
  });

  it('matches names case-insensitively and counts questions per name', async () => {
    dns.setA('Case.Example', ['192.0.2.9']);
    const before = dns.queries();
    assert.deepEqual(await resolver.resolve4('CASE.example'), ['192.0.2.9']);
    assert.equal(dns.queries('case.EXAMPLE'), 1);
    assert.equal(dns.queries(), before + 1);
    assert.equal(dns.queries('never.asked.example'), 0);
  });

  it('answers NXDOMAIN for unknown names and NODATA for a known name without that type', async () => {
    assert.equal(await code(resolver.resolve4('unknown.example')), 'ENOTFOUND');
    assert.equal(await code(resolver.resolve4('mail.example')), 'ENODATA');
  });

  it('fails, refuses or stays silent when told to', async () => {
    dns.setBehaviour('sf.example', 'servfail');
    dns.setBehaviour('rf.example', 'refused');
    dns.setBehaviour('drop.example', 'drop');
    assert.equal(await code(resolver.resolve4('sf.example')), 'ESERVFAIL');
    assert.equal(await code(resolver.resolve4('rf.example')), 'EREFUSED');
    assert.equal(await code(resolver.resolve4('drop.example')), 'ETIMEOUT');
    assert.equal(dns.queries('sf.example'), 1);
    assert.equal(dns.queries('drop.example'), 1);
  });

  it('forgets a removed name', async () => {
    dns.setA('gone.example', ['192.0.2.3']);
    dns.setBehaviour('gone.example', 'servfail');
    dns.remove('gone.example');
    assert.equal(await code(resolver.resolve4('gone.example')), 'ENOTFOUND');
  });

  it('answers through a CNAME as a recursive resolver does: the chain, then the records at its end', async () => {
    dns.setCname('sel._domainkey.shop.example', 'sel._domainkey.shop.example.dkim.provider.example');
    dns.setTxt('sel._domainkey.shop.example.dkim.provider.example', ['v=DKIM1; p=abc']);
    assert.deepEqual(await resolver.resolveTxt('sel._domainkey.shop.example'), [['v=DKIM1; p=abc']]);
    assert.deepEqual(await resolver.resolveCname('sel._domainkey.shop.example'), [
      'sel._domainkey.shop.example.dkim.provider.example',
    ]);
    dns.setCname('dangling.shop.example', 'nowhere.provider.example');
    assert.equal(await code(resolver.resolveTxt('dangling.shop.example')), 'ENOTFOUND');
  });

  it('refuses a record that is not an address', () => {
    assert.throws(() => dns.setA('bad.example', ['not-an-ip']), TypeError);
  });
});
