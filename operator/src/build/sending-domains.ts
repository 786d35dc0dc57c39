// What a RelayPolicy's SendingDomains add to its relays: the DKIM keys that sign (only
// those DNS serves), the sending domains and their users for the header-From check, and
// the key Secrets the pods mount. Pure over the caches.
import type { DkimKeyConfig, SendersConfig } from '@sluice/relay/config-schema';
import type { SendingDomain } from '../api/types.ts';
import type { KubeObject } from '../kube/client.ts';
import {
  DKIM_DIR,
  DKIM_KEY_LABEL,
  DKIM_KEY_LABEL_VALUE,
  type DkimAlgorithm,
  keyFile,
  selectorFor,
} from './dkim-keys.ts';

interface Lookup<T> {
  list(): T[];
}

function older(a: SendingDomain, b: SendingDomain): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  return ta === tb ? a.metadata.name.localeCompare(b.metadata.name) : ta.localeCompare(tb);
}

/**
 * The SendingDomains of a policy, one per domain: when two name the same domain the older
 * one counts, and `duplicates` maps the other's name to it.
 */
export function domainsOfPolicy(
  all: readonly SendingDomain[],
  namespace: string,
  policyName: string,
): { domains: SendingDomain[]; duplicates: Map<string, string> } {
  const mine = all
    .filter(
      (d) =>
        d.metadata.namespace === namespace &&
        d.spec?.policyRef?.name === policyName &&
        !d.metadata.deletionTimestamp &&
        typeof d.spec.domain === 'string',
    )
    .sort(older);
  const byDomain = new Map<string, SendingDomain>();
  const duplicates = new Map<string, string>();
  for (const d of mine) {
    const first = byDomain.get(d.spec.domain);
    if (first) duplicates.set(d.metadata.name, first.metadata.name);
    else byDomain.set(d.spec.domain, d);
  }
  return { domains: [...byDomain.values()], duplicates };
}

/** The DKIM key Secrets a SendingDomain owns, from a cache of the operator's Secrets. */
export function keySecretsOf<T extends KubeObject>(domain: SendingDomain, owned: Lookup<T>): T[] {
  const uid = domain.metadata.uid;
  if (!uid) return [];
  return owned
    .list()
    .filter(
      (s) =>
        s.metadata.namespace === domain.metadata.namespace &&
        (s.metadata as { labels?: Record<string, string> }).labels?.[DKIM_KEY_LABEL] ===
          DKIM_KEY_LABEL_VALUE &&
        s.metadata.ownerReferences?.some((r) => r.uid === uid && r.kind === 'SendingDomain') &&
        !s.metadata.deletionTimestamp,
    )
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

export interface DkimMount {
  secretName: string;
  items: Array<{ key: string; path: string }>;
}

export interface PolicyDomains {
  keys: DkimKeyConfig[];
  /** The RSA key of the policy's default-signer domain, once DNS serves it */
  defaultSigner?: DkimKeyConfig;
  senders: SendersConfig['domains'];
  mounts: DkimMount[];
}

export function keyPath(secretName: string, algorithm: DkimAlgorithm): string {
  return `${DKIM_DIR}/${secretName}/${keyFile(algorithm)}`;
}

export function policyDomains(
  all: readonly SendingDomain[],
  owned: Lookup<KubeObject & { data?: Record<string, string> }>,
  namespace: string,
  policyName: string,
  /** Name of the SendingDomain whose key is the relays' default signer */
  defaultSigner?: string,
): PolicyDomains {
  const out: PolicyDomains = { keys: [], senders: [], mounts: [] };
  for (const domain of domainsOfPolicy(all, namespace, policyName).domains) {
    const { spec } = domain;
    out.senders.push({ domain: spec.domain, ...(spec.users ? { users: [...spec.users] } : {}) });
    const secrets = keySecretsOf(domain, owned);
    for (const secret of secrets) {
      const files = Object.keys(secret.data ?? {}).filter((k) => k.endsWith('.pem'));
      out.mounts.push({
        secretName: secret.metadata.name,
        items: files.map((key) => ({ key, path: `${secret.metadata.name}/${key}` })),
      });
    }
    // signs: the active key, once status says DNS serves it
    const signing = domain.status?.keys?.find((k) => k.state === 'Active' && k.published);
    const secret = signing && secrets.find((s) => s.metadata.name === signing.secretName);
    if (!signing || !secret) continue;
    for (const algorithm of signing.algorithms as DkimAlgorithm[]) {
      if (secret.data?.[keyFile(algorithm)] === undefined) continue;
      const key = {
        domain: spec.domain,
        selector: selectorFor(signing.selector, algorithm),
        algorithm,
        privateKeyFile: keyPath(secret.metadata.name, algorithm),
      };
      out.keys.push(key);
      if (domain.metadata.name === defaultSigner && algorithm === 'rsa-sha256') out.defaultSigner = key;
    }
  }
  return out;
}
