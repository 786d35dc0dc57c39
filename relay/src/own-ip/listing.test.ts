import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeListing, type IpStatus, listingChanges, mergeListing, zoneListed } from './listing.ts';

const listing = (entries: Record<string, Record<string, IpStatus>>) =>
  new Map(Object.entries(entries).map(([zone, ips]) => [zone, new Map(Object.entries(ips))]));
const listed = (code = '127.0.0.2'): IpStatus => ({ kind: 'listed', code });
const clear: IpStatus = { kind: 'clear' };
const unknown: IpStatus = { kind: 'unknown', why: 'the lookup failed' };

describe('own-IP listing', () => {
  it('keeps the last known answer through an unknown one', () => {
    const before = listing({ z: { a: listed(), b: clear } });
    const next = mergeListing(before, listing({ z: { a: unknown, b: unknown, c: unknown } }));
    assert.deepEqual(
      next,
      listing({
        z: {
          a: { kind: 'listed', code: '127.0.0.2', stale: 'the lookup failed' },
          b: { kind: 'clear', stale: 'the lookup failed' },
          c: unknown,
        },
      }),
    );
    // and it is no change
    assert.deepEqual(listingChanges(before, next), []);
  });

  it('reports a first listing, a new code and a delisting; a first clear is no change', () => {
    assert.deepEqual(listingChanges(new Map(), listing({ z: { a: listed(), b: clear } })), [
      { zone: 'z', ip: 'a', listed: true, code: '127.0.0.2' },
    ]);
    assert.deepEqual(
      listingChanges(
        listing({ z: { a: listed(), b: listed() } }),
        listing({ z: { a: listed('127.0.0.3'), b: clear } }),
      ),
      [
        { zone: 'z', ip: 'a', listed: true, code: '127.0.0.3' },
        { zone: 'z', ip: 'b', listed: false },
      ],
    );
    assert.deepEqual(listingChanges(listing({ z: { a: listed() } }), listing({ z: { a: listed() } })), []);
  });

  it('says per zone: listed, clear, or not known', () => {
    const l = listing({
      x: { a: listed(), b: unknown },
      y: { a: clear, b: clear },
      z: { a: clear, b: unknown },
    });
    assert.equal(zoneListed(l, 'x'), true);
    assert.equal(zoneListed(l, 'y'), false);
    assert.equal(zoneListed(l, 'z'), undefined);
    assert.equal(zoneListed(l, 'none'), undefined);
  });

  it('describes the listing for /readyz', () => {
    assert.equal(describeListing(new Map(), []), 'not configured (ownIpWatch.ips is empty)');
    assert.equal(describeListing(new Map(), ['a']), '1 address(es) not checked yet');
    assert.equal(
      describeListing(listing({ x: { a: clear }, y: { a: clear } }), ['a']),
      '1 address(es) clear in 2 zone(s)',
    );
    assert.equal(
      describeListing(listing({ x: { a: listed(), b: unknown } }), ['a', 'b']),
      'a listed in x (127.0.0.2); unknown: b in x: the lookup failed',
    );
  });
});
