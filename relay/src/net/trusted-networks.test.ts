import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { TrustedNetworks } from './trusted-networks.ts';

describe('TrustedNetworks', () => {
  it('matches addresses inside IPv4 CIDR blocks and nothing outside them', () => {
    const trusted = new TrustedNetworks(['10.0.0.0/8', '172.16.0.0/12']);
    assert.equal(trusted.contains('10.0.0.0'), true);
    assert.equal(trusted.contains('10.255.255.255'), true);
    assert.equal(trusted.contains('172.31.4.5'), true);
    assert.equal(trusted.contains('172.32.0.1'), false);
    assert.equal(trusted.contains('11.0.0.1'), false);
    assert.equal(trusted.contains('192.168.1.7'), false);
  });

  it('matches addresses inside IPv6 CIDR blocks', () => {
    const trusted = new TrustedNetworks(['fd00::/8', '2001:db8:1::/48']);
    assert.equal(trusted.contains('fd12:3456::1'), true);
    assert.equal(trusted.contains('2001:db8:1:ffff::9'), true);
    assert.equal(trusted.contains('2001:db8:2::1'), false);
    assert.equal(trusted.contains('fe80::1'), false);
    assert.equal(trusted.contains('10.0.0.1'), false);
  });

  it('treats an entry without a prefix as a single host', () => {
    const trusted = new TrustedNetworks(['192.168.1.7', '::1']);
    assert.equal(trusted.contains('192.168.1.7'), true);
    assert.equal(trusted.contains('192.168.1.8'), false);
    assert.equal(trusted.contains('::1'), true);
    assert.equal(trusted.contains('::2'), false);
  });

  it('accepts /0, /32 and /128 prefixes', () => {
    assert.equal(new TrustedNetworks(['0.0.0.0/0']).contains('203.0.113.9'), true);
    assert.equal(new TrustedNetworks(['192.0.2.1/32']).contains('192.0.2.1'), true);
    assert.equal(new TrustedNetworks(['192.0.2.1/32']).contains('192.0.2.2'), false);
    assert.equal(new TrustedNetworks(['2001:db8::1/128']).contains('2001:db8::1'), true);
    assert.equal(new TrustedNetworks(['2001:db8::1/128']).contains('2001:db8::2'), false);
  });

  it('matches IPv4-mapped IPv6 addresses (as dual-stack sockets report them) against IPv4 entries', () => {
    const trusted = new TrustedNetworks(['10.0.0.0/8', '192.168.1.7']);
    assert.equal(trusted.contains('::ffff:10.1.2.3'), true);
    assert.equal(trusted.contains('::ffff:a01:203'), true);
    assert.equal(trusted.contains('::ffff:192.168.1.7'), true);
    assert.equal(trusted.contains('::ffff:11.1.2.3'), false);
    assert.equal(trusted.contains('::ffff:192.168.1.8'), false);
  });

  it('returns false for garbage instead of throwing', () => {
    const trusted = new TrustedNetworks(['0.0.0.0/0', '::/0']);
    for (const garbage of ['', 'nonsense', '10.0.0', '10.0.0.256', '10.0.0.1/8', '[::1]', 'localhost']) {
      assert.equal(trusted.contains(garbage), false, garbage);
    }
  });

  it('reports how many entries it holds', () => {
    assert.equal(new TrustedNetworks([]).size, 0);
    assert.equal(new TrustedNetworks(['10.0.0.0/8', '::1', '192.168.1.7']).size, 3);
  });

  it('matches nothing when empty', () => {
    const trusted = new TrustedNetworks([]);
    assert.equal(trusted.contains('127.0.0.1'), false);
    assert.equal(trusted.contains('::1'), false);
  });

  it('rejects a bad entry with SLUICE_ERR_CONFIG_INVALID naming the entry', () => {
    const bad = [
      '10.0.0.0/33',
      'nonsense',
      'fd00::/129',
      '10.0.0.0/',
      '10.0.0.0/-1',
      '10.0.0.0/8/8',
      '10.0.0.0/ 8',
      '10.0.0/8',
      '300.0.0.0/8',
      'fe80::1%eth0',
      '',
    ];
    for (const entry of bad) {
      assert.throws(
        () => new TrustedNetworks(['127.0.0.1', entry]),
        (err: unknown) =>
          isSluiceError(err, 'SLUICE_ERR_CONFIG_INVALID') && err.message.includes(JSON.stringify(entry)),
        `entry ${JSON.stringify(entry)}`,
      );
    }
  });
});
