import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import { type SendingDomainSpec, SendingDomainSpecSchema } from '../api/sending-domain.ts';
import { generateDkimKeys } from '../build/dkim-keys.ts';
import { dnsRecords, domainConditions } from './sending-domain-status.ts';

it('with CNAME delegation, the customer publishes both selectors once and the provider zone holds the keys', async () => {
  const spec = Value.Default(SendingDomainSpecSchema, {
    domain: 'shop.example',
    policyRef: { name: 'mail' },
    dkim: { ed25519: true },
    dns: { mode: 'CNAME' },
  }) as SendingDomainSpec;
  const keys = await generateDkimKeys(2048, true);
  const records = dnsRecords({
    spec,
    generations: [{ selector: 'sluice1', secretName: 'x', keys, createdAt: 0 }],
    delegationZone: 'dkim.provider.example',
    spf: { include: 'spf.provider.example', addresses: [] },
  });
  assert.deepEqual(
    records.map((r) => [
      r.purpose,
      r.type,
      r.zone,
      r.name,
      r.type === 'CNAME' ? r.value : r.value.slice(0, 12),
    ]),
    [
      [
        'DKIM',
        'CNAME',
        'customer',
        'sluice1._domainkey.shop.example',
        'sluice1._domainkey.shop.example.dkim.provider.example',
      ],
      [
        'DKIM',
        'CNAME',
        'customer',
        'sluice1-ed25519._domainkey.shop.example',
        'sluice1-ed25519._domainkey.shop.example.dkim.provider.example',
      ],
      [
        'DKIM',
        'CNAME',
        'customer',
        'sluice2._domainkey.shop.example',
        'sluice2._domainkey.shop.example.dkim.provider.example',
      ],
      [
        'DKIM',
        'CNAME',
        'customer',
        'sluice2-ed25519._domainkey.shop.example',
        'sluice2-ed25519._domainkey.shop.example.dkim.provider.example',
      ],
      ['DKIM', 'TXT', 'provider', 'sluice1._domainkey.shop.example.dkim.provider.example', 'v=DKIM1; k=r'],
      [
        'DKIM',
        'TXT',
        'provider',
        'sluice1-ed25519._domainkey.shop.example.dkim.provider.example',
        'v=DKIM1; k=e',
      ],
      ['SPF', 'TXT', 'customer', 'shop.example', 'v=spf1 inclu'],
      ['DMARC', 'TXT', 'customer', '_dmarc.shop.example', 'v=DMARC1; p='],
    ],
  );
  for (const r of records.filter((r) => r.type === 'TXT')) {
    assert.ok(r.strings?.every((s) => Buffer.byteLength(s) <= 255));
    assert.equal(r.strings?.join(''), r.value);
  }
});

it('says why a rotation that is due has not started', () => {
  const [dkim] = domainConditions(
    {
      generation: 1,
      signing: 's2',
      dkim: { selector: 's2', name: 's2._domainkey.shop.example', answer: { ok: true, value: 'match' } },
      rotationWaiting: 'selector s1 is still held by the replaced key x until 2026-01-02T00:00:00.000Z',
      spf: { ok: true, value: { result: 'missing' } },
      dmarc: { ok: true, value: { policy: 'missing' } },
    },
    'shop.example',
  );
  assert.equal(
    dkim?.message,
    's2._domainkey.shop.example serves the key that signs; the rotation that is due waits: selector s1 is still held by the replaced key x until 2026-01-02T00:00:00.000Z',
  );
});
