// DKIM signing keys, read from their files and checked before a config applies: a key that
// does not parse, does not fit its algorithm or is too short is a config error naming the
// field, and the previous keys stay in force (the reload is all or nothing).
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { DkimKeyConfig, RelayConfig } from '../config/schema.ts';
import { ConfigError } from '../config/validate.ts';

/** RFC 8301 3.2: verifiers must accept 1024 to 4096 bits; signers must use at least 1024. */
export const MIN_RSA_BITS = 1024;

export interface DkimKey {
  domain: string;
  selector: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  key: KeyObject;
}

export interface DkimKeys {
  /** Keys by lower-case domain: at most one per algorithm, RSA first. */
  byDomain: ReadonlyMap<string, readonly DkimKey[]>;
  defaultSigner: readonly DkimKey[];
}

export const NO_DKIM_KEYS: DkimKeys = { byDomain: new Map(), defaultSigner: [] };

async function loadKey(
  entry: DkimKeyConfig,
  field: string,
  problems: string[],
): Promise<DkimKey | undefined> {
  let pem: string;
  try {
    pem = await readFile(entry.privateKeyFile, 'utf8');
  } catch (err: unknown) {
    problems.push(`${field}.privateKeyFile: cannot read ${entry.privateKeyFile}: ${(err as Error).message}`);
    return undefined;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    problems.push(`${field}.privateKeyFile: ${entry.privateKeyFile} is not a PEM private key`);
    return undefined;
  }
  const algorithm = entry.algorithm ?? 'rsa-sha256';
  const type = key.asymmetricKeyType;
  if (algorithm === 'rsa-sha256') {
    if (type !== 'rsa') {
      problems.push(`${field}.privateKeyFile: algorithm rsa-sha256 needs an RSA key, not ${type}`);
      return undefined;
    }
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      problems.push(
        `${field}.privateKeyFile: an RSA key of ${bits} bits is too short (at least ${MIN_RSA_BITS}; 2048 advised)`,
      );
      return undefined;
    }
  } else if (type !== 'ed25519') {
    problems.push(`${field}.privateKeyFile: algorithm ed25519-sha256 needs an Ed25519 key, not ${type}`);
    return undefined;
  }
  return { domain: entry.domain.toLowerCase(), selector: entry.selector, algorithm, key };
}

/** Reads and checks every key of `dkim`; throws a ConfigError listing each bad one. */
export async function loadDkimKeys(dkim: RelayConfig['dkim'], source: string): Promise<DkimKeys> {
  const problems: string[] = [];
  const byDomain = new Map<string, DkimKey[]>();
  const keys = dkim?.keys ?? [];
  for (const [i, entry] of keys.entries()) {
    const key = await loadKey(entry, `dkim.keys[${i}]`, problems);
    if (!key) continue;
    const list = byDomain.get(key.domain) ?? [];
    if (list.some((k) => k.algorithm === key.algorithm)) {
      problems.push(`dkim.keys[${i}]: ${key.domain} already has an ${key.algorithm} key`);
      continue;
    }
    list.push(key);
    list.sort((a, b) => (a.algorithm === b.algorithm ? 0 : a.algorithm === 'rsa-sha256' ? -1 : 1));
    byDomain.set(key.domain, list);
  }
  const fallback = dkim?.defaultSigner
    ? await loadKey(dkim.defaultSigner, 'dkim.defaultSigner', problems)
    : undefined;
  if (problems.length > 0) throw new ConfigError('SLUICE_ERR_CONFIG_INVALID', source, problems);
  return { byDomain, defaultSigner: fallback ? [fallback] : [] };
}

/**
 * The keys that sign mail from `fromDomain`: its own, else those of its closest parent
 * domain that has keys (a key for example.com signs news.example.com, which DMARC's
 * relaxed alignment accepts), else the default signer's.
 */
export function keysFor(keys: DkimKeys, fromDomain: string | undefined): readonly DkimKey[] {
  if (fromDomain) {
    const labels = fromDomain.toLowerCase().replace(/\.$/, '').split('.');
    for (let i = 0; i < labels.length - 1; i++) {
      const found = keys.byDomain.get(labels.slice(i).join('.'));
      if (found) return found;
    }
  }
  return keys.defaultSigner;
}
