// The DNS checks of a SendingDomain against a real DNS server on loopback.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type TestDnsServer } from '@sluice/relay/testing';
import { checkDkim, checkDmarc, checkSpf, type DnsLookup, resolverLookup } from './dns-checks.ts';
import { domainConditions } from './sending-domain-status.ts';

describe('SendingDomain DNS checks', () => {
  let dns: TestDnsServer;
  let lookup: DnsLookup;

  before(async () => {
    dns = await startDnsServer();
    lookup = resolverLookup([dns.address], 500);
  });
  after(() => dns.close());

  it('evaluates SPF for the relays’ egress addresses, and otherwise looks for the include', async () => {
    dns.setTxt('spf.example', ['v=spf1 ip4:192.0.2.0/24 include:_spf.provider.example -all']);
    dns.setTxt('_spf.provider.example', ['v=spf1 ip4:198.51.100.7 -all']);
    const relays = { include: '', addresses: ['198.51.100.7', '192.0.2.9'] };
    assert.deepEqual(await checkSpf(lookup, 'spf.example', relays), {
      ok: true,
      value: { result: 'authorized', detail: 'SPF passes for 198.51.100.7, 192.0.2.9' },
    });
    const outside = await checkSpf(lookup, 'spf.example', { include: '', addresses: ['203.0.113.1'] });
    assert.deepEqual(outside, {
      ok: true,
      value: { result: 'notAuthorized', detail: 'SPF does not pass for 203.0.113.1 (fail)' },
    });
    const byInclude = await checkSpf(lookup, 'spf.example', {
      include: '_spf.provider.example',
      addresses: [],
    });
    assert.equal(byInclude.ok && byInclude.value.result, 'authorized');
    const missing = await checkSpf(lookup, 'nothing.example', { include: 'x.example', addresses: [] });
    assert.deepEqual(missing, { ok: true, value: { result: 'missing' } });
  });

  it('reads the DMARC policy, the parent domain’s for a subdomain without one, and counts two records as none (RFC 7489 6.6.3)', async () => {
    dns.setTxt('_dmarc.q.example', ['v=DMARC1; p=quarantine; pct=100']);
    dns.setTxt('_dmarc.two.example', ['v=DMARC1; p=reject', 'v=DMARC1; p=none']);
    assert.deepEqual(await checkDmarc(lookup, 'q.example'), {
      ok: true,
      value: { policy: 'quarantine', record: 'v=DMARC1; p=quarantine; pct=100', at: 'q.example' },
    });
    // a subdomain without a record of its own: the parent's sp= applies
    dns.setTxt('_dmarc.shop.example', ['v=DMARC1; p=reject; sp=quarantine']);
    const sub = await checkDmarc(lookup, 'news.shop.example');
    assert.deepEqual(sub.ok && [sub.value.policy, sub.value.policy !== 'missing' && sub.value.at], [
      'quarantine',
      'shop.example',
    ]);
    assert.deepEqual(await checkDmarc(lookup, 'two.example'), { ok: true, value: { policy: 'missing' } });
  });

  it('tells a failed lookup from a missing record and another key, and reports it as Unknown', async () => {
    dns.setBehaviour('s1._domainkey.broken.example', 'servfail');
    const failed = await checkDkim(lookup, 's1._domainkey.broken.example', 'AAAA');
    assert.equal(failed.ok, false);
    const absent = await checkDkim(lookup, 's1._domainkey.absent.example', 'AAAA');
    assert.deepEqual(absent, { ok: true, value: 'missing' });
    dns.setTxt('s1._domainkey.other.example', ['v=DKIM1; k=rsa; p=BBBB']);
    assert.deepEqual(await checkDkim(lookup, 's1._domainkey.other.example', 'AAAA'), {
      ok: true,
      value: 'mismatch',
    });
    assert.deepEqual(await checkDkim(lookup, 's1._domainkey.other.example', 'BBBB'), {
      ok: true,
      value: 'match',
    });
    const [dkim] = domainConditions(
      {
        generation: 1,
        dkim: { selector: 's1', name: 's1._domainkey.broken.example', answer: failed },
        spf: { ok: true, value: { result: 'missing' } },
        dmarc: { ok: true, value: { policy: 'missing' } },
      },
      'broken.example',
    );
    assert.deepEqual([dkim?.status, dkim?.reason], ['Unknown', 'LookupFailed']);
  });
});
