import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { classifyAddress, DestinationPolicy, GLOBAL } from './destination-policy.ts';

// The IANA IPv4 and IPv6 special-purpose address registries, one address of each block
// that is not globally reachable, and the block's name in the verdict.
const INTERNAL: ReadonlyArray<[string, string]> = [
  ['0.1.2.3', 'unspecified'],
  ['10.1.2.3', 'private'],
  ['100.64.0.1', 'carrierGradeNat'],
  ['100.127.255.254', 'carrierGradeNat'],
  ['127.0.0.1', 'loopback'],
  ['127.255.0.9', 'loopback'],
  ['169.254.169.254', 'linkLocal'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'reserved'],
  ['192.88.99.1', 'reserved'],
  ['192.168.1.1', 'private'],
  ['198.18.0.1', 'reserved'],
  ['198.19.255.1', 'reserved'],
  ['198.51.100.7', 'reserved'],
  ['203.0.113.7', 'reserved'],
  ['224.0.0.1', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['::ffff:127.0.0.1', 'ipv4Mapped:loopback'],
  ['::ffff:7f00:1', 'ipv4Mapped:loopback'],
  ['::ffff:169.254.169.254', 'ipv4Mapped:linkLocal'],
  ['::ffff:10.0.0.1', 'ipv4Mapped:private'],
  ['::ffff:100.64.1.1', 'ipv4Mapped:carrierGradeNat'],
  ['64:ff9b::7f00:1', 'nat64:loopback'],
  ['64:ff9b::a9fe:a9fe', 'nat64:linkLocal'],
  ['64:ff9b:1::1.2.3.4', 'nat64LocalUse'],
  ['2001:db8::1', 'reserved'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
  ['2002:7f00:1::1', '6to4:loopback'],
  ['2002:c0a8:101::1', '6to4:private'],
  ['fc00::1', 'uniqueLocal'],
  ['fd12:3456::1', 'uniqueLocal'],
  ['fe80::1', 'linkLocal'],
  ['fe80::1%eth0', 'linkLocal'],
  ['ff02::1', 'multicast'],
  ['100::1', 'discard'],
  ['::7f00:1', 'unallocated'],
  ['4000::1', 'unallocated'],
  ['not an address', 'invalid'],
  ['', 'invalid'],
];

const PUBLIC = [
  '8.8.8.8',
  '1.1.1.1',
  '100.63.255.255',
  '100.128.0.1',
  '172.32.0.1',
  '192.0.1.1',
  '198.20.0.1',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:808:808::1',
  '2a00:1450:4001:80b::200e',
  '2001:4860:4860::8888',
];

describe('classifyAddress', () => {
  it('names the special-purpose block of every address that is not globally routable', () => {
    for (const [address, range] of INTERNAL) assert.equal(classifyAddress(address), range, address);
  });

  it('finds public unicast addresses global, also carried in IPv4-mapped, NAT64 and 6to4 ones', () => {
    for (const address of PUBLIC) assert.equal(classifyAddress(address), GLOBAL, address);
  });
});

describe('DestinationPolicy', () => {
  it('allows only globally routable unicast addresses by default', () => {
    const policy = new DestinationPolicy({ allowLocalAddresses: false });
    for (const [address, range] of INTERNAL) {
      assert.deepEqual(policy.check(address), { allowed: false, range }, address);
    }
    for (const address of PUBLIC) assert.equal(policy.check(address).allowed, true, address);
  });

  it('allowLocalAddresses allows every address but unspecified, broadcast and multicast', () => {
    const policy = new DestinationPolicy({ allowLocalAddresses: true });
    for (const address of ['127.0.0.1', '::ffff:127.0.0.1', '10.0.0.1', '169.254.169.254', 'fd00::1']) {
      assert.equal(policy.check(address).allowed, true, address);
    }
    for (const address of ['0.0.0.0', '::', '255.255.255.255', '224.0.0.1', 'ff02::1', '::ffff:0.0.0.0']) {
      assert.equal(policy.check(address).allowed, false, address);
    }
  });

  it('allowedNetworks allows those networks (IPv4-mapped spellings too) and nothing else', () => {
    const policy = new DestinationPolicy({
      allowLocalAddresses: false,
      allowedNetworks: ['10.20.0.0/16', '127.0.0.3', 'fd00:1::/32'],
    });
    for (const address of ['10.20.3.4', '::ffff:10.20.3.4', '127.0.0.3', 'fd00:1:2::3']) {
      assert.equal(policy.check(address).allowed, true, address);
    }
    for (const address of ['10.21.0.1', '127.0.0.2', '::1', 'fd00:2::1', '169.254.169.254']) {
      assert.equal(policy.check(address).allowed, false, address);
    }
  });

  it("refuses the relay's own interface addresses, however public", () => {
    const policy = new DestinationPolicy({ allowLocalAddresses: false, ownAddresses: ['8.8.4.4'] });
    assert.deepEqual(policy.check('8.8.4.4'), { allowed: false, range: 'ownAddress' });
    assert.deepEqual(policy.check('::ffff:8.8.4.4'), { allowed: false, range: 'ownAddress' });
    assert.equal(policy.check('8.8.8.8').allowed, true);
  });

  it('names delivery.allowedNetworks and the entry when one is no address or network', () => {
    assert.throws(
      () => new DestinationPolicy({ allowLocalAddresses: false, allowedNetworks: ['10.0.0.0/33'] }),
      (err: unknown) =>
        isSluiceError(err, 'SLUICE_ERR_CONFIG_INVALID') &&
        /delivery\.allowedNetworks: "10\.0\.0\.0\/33": prefix length/.test(err.message),
    );
  });
});
