// A SendingDomain's status from what its reconcile found: the DNS records to publish and
// the conditions DkimPublished, SpfAuthorizesRelay, DmarcPolicy and Ready. Pure.
import type { DnsRecord, SendingDomainSpec } from '../api/sending-domain.ts';
import { type DkimAlgorithm, dkimRecord, publicKeyTag, selectorFor, txtStrings } from '../build/dkim-keys.ts';
import type { ConditionInput } from './conditions.ts';
import type { KeyGeneration } from './dkim-rotation.ts';
import type { DkimAnswer, DmarcAnswer, Lookup, SpfAnswer } from './dns-checks.ts';

export function algorithmsOf(spec: SendingDomainSpec): DkimAlgorithm[] {
  return spec.dkim.ed25519 ? ['rsa-sha256', 'ed25519-sha256'] : ['rsa-sha256'];
}

/** Where a selector's key record lives: at the domain, or (CNAME mode) in the delegation zone. */
export function keyRecordName(domain: string, selector: string, zone?: string): string {
  const name = `${selector}._domainkey.${domain}`;
  return zone ? `${name}.${zone}` : name;
}

/** The public key tag of each key of a generation, by algorithm (derived from the private keys). */
export function publicKeys(
  g: KeyGeneration,
): Array<{ algorithm: DkimAlgorithm; selector: string; p: string }> {
  return (Object.entries(g.keys) as Array<[DkimAlgorithm, string]>).map(([algorithm, pem]) => ({
    algorithm,
    selector: selectorFor(g.selector, algorithm),
    p: publicKeyTag(pem),
  }));
}

const txt = (
  purpose: DnsRecord['purpose'],
  name: string,
  value: string,
  zone: DnsRecord['zone'],
  selector?: string,
): DnsRecord => ({
  purpose,
  name,
  type: 'TXT',
  value,
  strings: txtStrings(value),
  zone,
  ...(selector ? { selector } : {}),
});

export interface RecordInputs {
  spec: SendingDomainSpec;
  generations: readonly KeyGeneration[];
  /** The delegation zone in CNAME mode (the domain's or the policy's) */
  delegationZone?: string;
  spf: { include?: string; addresses: readonly string[] };
}

/** Every DNS record the domain (and, with CNAME delegation, the provider) must publish. */
export function dnsRecords(input: RecordInputs): DnsRecord[] {
  const { spec } = input;
  const { domain } = spec;
  const out: DnsRecord[] = [];
  const zone = spec.dns.mode === 'CNAME' ? input.delegationZone : undefined;
  if (zone) {
    // published once: rotation changes only the provider's zone
    for (const base of spec.dkim.selectors) {
      for (const algorithm of algorithmsOf(spec)) {
        const selector = selectorFor(base, algorithm);
        out.push({
          purpose: 'DKIM',
          name: keyRecordName(domain, selector),
          type: 'CNAME',
          value: keyRecordName(domain, selector, zone),
          zone: 'customer',
          selector,
        });
      }
    }
  }
  for (const g of input.generations) {
    for (const key of publicKeys(g)) {
      out.push(
        txt(
          'DKIM',
          keyRecordName(domain, key.selector, zone),
          dkimRecord(key.algorithm, key.p),
          zone ? 'provider' : 'customer',
          key.selector,
        ),
      );
    }
  }
  const terms = input.spf.include
    ? [`include:${input.spf.include}`]
    : input.spf.addresses.map((a) => (a.includes(':') ? `ip6:${a}` : `ip4:${a}`));
  out.push(txt('SPF', domain, ['v=spf1', ...terms, '~all'].join(' '), 'customer'));
  const rua = spec.dns.dmarcReports ?? `postmaster@${domain}`;
  out.push(txt('DMARC', `_dmarc.${domain}`, `v=DMARC1; p=none; rua=mailto:${rua}`, 'customer'));
  return out;
}

export interface DomainFacts {
  generation: number;
  /** Why the domain cannot be used at all (no policy, a duplicate), if so */
  blocked?: { reason: string; message: string };
  /** The selector that signs, when DNS serves its key */
  signing?: string;
  /** DNS answers for the key that signs or is waited for */
  dkim: { selector: string; name: string; answer: Lookup<DkimAnswer> } | undefined;
  /** A newer key waiting for DNS while the current one signs */
  rotatingTo?: { selector: string; name: string };
  /** Why a rotation that is due has not started */
  rotationWaiting?: string;
  spf: Lookup<SpfAnswer>;
  dmarc: Lookup<DmarcAnswer>;
}

const DMARC_REASONS = { none: 'None', quarantine: 'Quarantine', reject: 'Reject' } as const;

export function domainConditions(f: DomainFacts, domain: string): ConditionInput[] {
  const g = { observedGeneration: f.generation };
  const cond = (
    type: ConditionInput['type'],
    status: 'True' | 'False' | 'Unknown',
    reason: string,
    message: string,
  ) => ({ type, status, reason, message, ...g });

  let dkim: ConditionInput;
  if (f.signing && f.dkim) {
    const more = f.rotatingTo
      ? `; the next key waits for ${f.rotatingTo.name} (TXT) to be published, and signs once it is`
      : f.rotationWaiting
        ? `; the rotation that is due waits: ${f.rotationWaiting}`
        : '';
    dkim = cond('DkimPublished', 'True', 'Published', `${f.dkim.name} serves the key that signs${more}`);
  } else if (!f.dkim) {
    dkim = cond('DkimPublished', 'Unknown', 'NoKey', 'no DKIM key yet');
  } else if (!f.dkim.answer.ok) {
    dkim = cond(
      'DkimPublished',
      'Unknown',
      'LookupFailed',
      `looking up ${f.dkim.name} failed: ${f.dkim.answer.error}`,
    );
  } else if (f.dkim.answer.value === 'mismatch') {
    dkim = cond(
      'DkimPublished',
      'False',
      'KeyMismatch',
      `${f.dkim.name} serves another key than the one in status.records; mail is signed by the relay's default signer until it matches`,
    );
  } else {
    dkim = cond(
      'DkimPublished',
      'False',
      'NotPublished',
      `publish ${f.dkim.name} (TXT, see status.records); mail is signed by the relay's default signer until DNS serves it`,
    );
  }

  let spf: ConditionInput;
  if (!f.spf.ok)
    spf = cond(
      'SpfAuthorizesRelay',
      'Unknown',
      'LookupFailed',
      `SPF lookup for ${domain} failed: ${f.spf.error}`,
    );
  else if (f.spf.value.result === 'authorized')
    spf = cond('SpfAuthorizesRelay', 'True', 'Authorized', f.spf.value.detail);
  else if (f.spf.value.result === 'missing')
    spf = cond(
      'SpfAuthorizesRelay',
      'False',
      'Missing',
      `${domain} publishes no SPF record; see status.records`,
    );
  else
    spf = cond('SpfAuthorizesRelay', 'False', 'NotAuthorized', `${f.spf.value.detail}; see status.records`);

  let dmarc: ConditionInput;
  if (!f.dmarc.ok)
    dmarc = cond(
      'DmarcPolicy',
      'Unknown',
      'LookupFailed',
      `DMARC lookup for _dmarc.${domain} failed: ${f.dmarc.error}`,
    );
  else if (f.dmarc.value.policy === 'missing')
    dmarc = cond(
      'DmarcPolicy',
      'False',
      'Missing',
      `_dmarc.${domain} publishes no DMARC record; start with the one in status.records (p=none)`,
    );
  else
    dmarc = cond(
      'DmarcPolicy',
      'True',
      DMARC_REASONS[f.dmarc.value.policy],
      `_dmarc.${f.dmarc.value.at}: ${f.dmarc.value.record}`,
    );

  let ready: ConditionInput;
  if (f.blocked) ready = cond('Ready', 'False', f.blocked.reason, f.blocked.message);
  else if (dkim.status !== 'True') ready = cond('Ready', 'False', 'DkimNotPublished', dkim.message);
  else if (spf.status !== 'True') ready = cond('Ready', 'False', 'SpfNotAuthorized', spf.message);
  else if (dmarc.status !== 'True') ready = cond('Ready', 'False', 'DmarcMissing', dmarc.message);
  else ready = cond('Ready', 'True', 'Ready', `mail from ${domain} is signed with selector ${f.signing}`);
  return [dkim, spf, dmarc, ready];
}
