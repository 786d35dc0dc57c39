import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { MxResolver } from './mx-resolver.ts';

// A real DNS server on loopback; the resolver talks to it over UDP.
describe('MxResolver', () => {
  let dns: TestDnsServer;
  let resolver: MxResolver;
  before(async () => {
    dns = await startDnsServer();
    resolver = new MxResolver({ servers: [dns.address], timeoutMs: 300 });
  });
  after(() => dns.close());

  it('lists MX hosts by priority', async () => {
    dns.setMx('two.test', [
      { exchange: 'mx2.two.test', priority: 20 },
      { exchange: 'mx1.two.test', priority: 10 },
    ]);
    assert.deepEqual(await resolver.resolve('two.test'), {
      kind: 'hosts',
      hosts: [
        { exchange: 'mx1.two.test', priority: 10 },
        { exchange: 'mx2.two.test', priority: 20 },
      ],
    });
  });

  it('keeps every host of equal priority', async () => {
    dns.setMx('even.test', [
      { exchange: 'a.even.test', priority: 10 },
      { exchange: 'b.even.test', priority: 10 },
      { exchange: 'c.even.test', priority: 5 },
    ]);
    const answer = await resolver.resolve('even.test');
    assert.ok(answer.kind === 'hosts');
    assert.equal(answer.hosts[0]?.exchange, 'c.even.test');
    assert.deepEqual(
      answer.hosts
        .slice(1)
        .map((h) => h.exchange)
        .toSorted(),
      ['a.even.test', 'b.even.test'],
    );
  });

  it('uses the domain itself when it has an address but no MX (implicit MX)', async () => {
    dns.setA('implicit.test', ['192.0.2.7']);
    assert.deepEqual(await resolver.resolve('implicit.test'), {
      kind: 'hosts',
      hosts: [{ exchange: 'implicit.test', priority: 0 }],
    });
    dns.setA('v6only.test', ['2001:db8::7']);
    assert.deepEqual(await resolver.resolve('v6only.test'), {
      kind: 'hosts',
      hosts: [{ exchange: 'v6only.test', priority: 0 }],
    });
  });

  it('reports a null MX (RFC 7505)', async () => {
    dns.setMx('nullmx.test', [{ exchange: '.', priority: 0 }]);
    assert.deepEqual(await resolver.resolve('nullmx.test'), { kind: 'null-mx' });
  });

  it('reports NXDOMAIN as no-domain', async () => {
    assert.deepEqual(await resolver.resolve('nowhere.test'), { kind: 'no-domain' });
  });

  it('reports SERVFAIL, REFUSED and timeouts as temporary', async () => {
    dns.setBehaviour('servfail.test', 'servfail');
    dns.setBehaviour('refused.test', 'refused');
    dns.setBehaviour('drop.test', 'drop');
    for (const name of ['servfail.test', 'refused.test', 'drop.test']) {
      const answer = await resolver.resolve(name);
      assert.equal(answer.kind, 'temporary', name);
      assert.ok(answer.kind === 'temporary');
      assert.match(answer.reason, new RegExp(name.replace('.', '\\.')));
    }
  });

  it('takes an address literal as the host without asking DNS', async () => {
    const before = dns.queries();
    assert.deepEqual(await resolver.resolve('[192.0.2.9]'), {
      kind: 'hosts',
      hosts: [{ exchange: '192.0.2.9', priority: 0 }],
    });
    assert.equal(dns.queries(), before);
  });

  it('answers mx-connect style callback lookups from the same servers', async () => {
    dns.setA('host.cb.test', ['192.0.2.10', '192.0.2.11']);
    const a = await new Promise<unknown>((resolve, reject) =>
      resolver.callbackResolve('host.cb.test', (err, records) => (err ? reject(err) : resolve(records))),
    );
    assert.deepEqual((a as string[]).toSorted(), ['192.0.2.10', '192.0.2.11']);
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
      resolver.callbackResolve('host.cb.test', 'AAAA', (e) => resolve(e)),
    );
    assert.equal(err?.code, 'ENODATA');
  });

  it('refuses a timeout that is not positive', () => {
    assert.throws(() => new MxResolver({ servers: [], timeoutMs: 0 }), RangeError);
  });
});
