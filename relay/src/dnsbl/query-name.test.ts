import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dnsblQueryName, unmapIpv4 } from './query-name.ts';

describe('dnsblQueryName', () => {
  it('reverses the octets of an IPv4 address', () => {
    assert.equal(dnsblQueryName('1.2.3.4', 'xbl.spamhaus.org'), '4.3.2.1.xbl.spamhaus.org');
    assert.equal(dnsblQueryName('127.0.0.2', 'zen.example'), '2.0.0.127.zen.example');
  });

  it('writes an IPv6 address as 32 reversed nibbles (RFC 5782 §2.4)', () => {
    const name = dnsblQueryName('2001:db8::1', 'dnsbl.example');
    assert.equal(name, '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.dnsbl.example');
    assert.equal(name.split('.').length - 2, 32);
  });

  it('gives the same name for every spelling of one IPv6 address', () => {
    const expected = dnsblQueryName('2001:db8:0:0:0:0:0:1', 'z.example');
    assert.equal(dnsblQueryName('2001:DB8::1', 'z.example'), expected);
    assert.equal(dnsblQueryName('2001:0db8:0000::0001', 'z.example'), expected);
  });

  it('handles compression at either end and a scope id', () => {
    assert.equal(dnsblQueryName('::1', 'z').split('.').slice(0, 2).join('.'), '1.0');
    assert.equal(dnsblQueryName('::1', 'z').split('.').length, 33);
    assert.equal(dnsblQueryName('fe80::', 'z'), `${'0.'.repeat(28)}0.8.e.f.z`);
    assert.equal(dnsblQueryName('fe80::1%eth0', 'z'), dnsblQueryName('fe80::1', 'z'));
  });

  it('looks an IPv4-mapped IPv6 address up as IPv4, in either notation', () => {
    assert.equal(dnsblQueryName('::ffff:1.2.3.4', 'xbl.spamhaus.org'), '4.3.2.1.xbl.spamhaus.org');
    assert.equal(dnsblQueryName('::FFFF:102:304', 'xbl.spamhaus.org'), '4.3.2.1.xbl.spamhaus.org');
  });

  it('keeps other embedded-IPv4 forms as IPv6', () => {
    // NAT64 (64:ff9b::/96) is not a mapped address; it is listed, if at all, as IPv6.
    const name = dnsblQueryName('64:ff9b::1.2.3.4', 'z');
    assert.equal(name, `4.0.3.0.2.0.1.0.${'0.'.repeat(16)}b.9.f.f.4.6.0.0.z`);
  });

  it('ignores dots around the zone', () => {
    assert.equal(dnsblQueryName('1.2.3.4', 'xbl.spamhaus.org.'), '4.3.2.1.xbl.spamhaus.org');
  });

  it('throws on anything that is not an IP address', () => {
    for (const bad of ['', 'localhost', '1.2.3', '1.2.3.256', '2001:db8::1::2', 'gggg::1', '::ffff:1.2.3']) {
      assert.throws(() => dnsblQueryName(bad, 'z.example'), TypeError, bad);
    }
    assert.throws(() => dnsblQueryName('1.2.3.4', '.'), TypeError);
  });
});

describe('unmapIpv4', () => {
  it('returns the IPv4 address inside a mapped address and leaves others alone', () => {
    assert.equal(unmapIpv4('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(unmapIpv4('::ffff:c000:207'), '192.0.2.7');
    assert.equal(unmapIpv4('192.0.2.7'), '192.0.2.7');
    assert.equal(unmapIpv4('2001:db8::1'), '2001:db8::1');
    assert.equal(unmapIpv4('not an ip'), 'not an ip');
  });
});
