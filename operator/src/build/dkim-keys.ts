// A SendingDomain's DKIM keys: generated with node:crypto into Secrets the SendingDomain
// owns (one Secret per selector, holding the RSA key and, when asked for, the Ed25519
// key), and what DNS must serve for them. Pure apart from key generation.
import { createPrivateKey, createPublicKey, generateKeyPair } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { SendingDomain } from '../api/types.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, PATHS } from './names.ts';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/** Label of every DKIM key Secret; the owner reference says whose it is. */
export const DKIM_KEY_LABEL = 'sluice.dev/component';
export const DKIM_KEY_LABEL_VALUE = 'dkim-key';

export const ANNOTATIONS = {
  selector: 'sluice.dev/dkim-selector',
  createdAt: 'sluice.dev/dkim-created-at',
  activeSince: 'sluice.dev/dkim-active-since',
  retiringSince: 'sluice.dev/dkim-retiring-since',
} as const;

/**
 * Where the relay pods find the keys: beside config.yaml, in the same projected volume
 * (workload.ts), so that a config naming a new key and the key arrive in one swap.
 */
export const DKIM_DIR = PATHS.configDir;

/** The key of a Secret's data holding the private key of an algorithm. */
export function keyFile(algorithm: DkimAlgorithm): string {
  return `${algorithm}.pem`;
}

/** The selector a key of `algorithm` is published under: the Ed25519 key beside the RSA one. */
export function selectorFor(selector: string, algorithm: DkimAlgorithm): string {
  return algorithm === 'rsa-sha256' ? selector : `${selector}-ed25519`;
}

export function keySecretName(domain: SendingDomain, selector: string): string {
  return `${domain.metadata.name.slice(0, 200)}-dkim-${selector}`;
}

/** New private keys (PKCS#8 PEM): RSA of `rsaBits`, and Ed25519 when asked for. */
export async function generateDkimKeys(
  rsaBits: number,
  ed25519: boolean,
): Promise<Partial<Record<DkimAlgorithm, string>>> {
  const pkcs8 = (type: 'rsa' | 'ed25519', options: { modulusLength?: number }) =>
    new Promise<string>((resolve, reject) =>
      generateKeyPair(
        type as 'rsa',
        {
          modulusLength: options.modulusLength ?? 0,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        },
        (err, _publicKey, privateKey) => (err ? reject(err) : resolve(privateKey)),
      ),
    );
  const [rsa, ed] = await Promise.all([
    pkcs8('rsa', { modulusLength: rsaBits }),
    ed25519 ? pkcs8('ed25519', {}) : undefined,
  ]);
  return { 'rsa-sha256': rsa, ...(ed ? { 'ed25519-sha256': ed } : {}) };
}

/**
 * The p= value of a key's DKIM record: the DER SubjectPublicKeyInfo for RSA (RFC 6376
 * 3.6.1), the bare 32-byte public key for Ed25519 (RFC 8463 4.2).
 */
export function publicKeyTag(privateKeyPem: string): string {
  const key = createPublicKey(createPrivateKey(privateKeyPem));
  if (key.asymmetricKeyType === 'ed25519') {
    const jwk = key.export({ format: 'jwk' });
    return Buffer.from(jwk.x ?? '', 'base64url').toString('base64');
  }
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/** The TXT record a DKIM key is published with. */
export function dkimRecord(algorithm: DkimAlgorithm, publicKey: string): string {
  return `v=DKIM1; k=${algorithm === 'rsa-sha256' ? 'rsa' : 'ed25519'}; p=${publicKey}`;
}

/**
 * A TXT value as the character-strings of its zone-file form: one string holds at most
 * 255 bytes (RFC 1035 3.3.14), so a 2048-bit key's record takes two.
 */
export function txtStrings(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 255) out.push(bytes.subarray(i, i + 255).toString('utf8'));
  return out.length > 0 ? out : [''];
}

export function keySecret(
  domain: SendingDomain,
  selector: string,
  keys: Partial<Record<DkimAlgorithm, string>>,
  createdAt: string,
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: keySecretName(domain, selector),
      namespace: domain.metadata.namespace,
      labels: {
        [MANAGED_BY_LABEL]: MANAGED_BY,
        'app.kubernetes.io/part-of': 'sluice',
        [DKIM_KEY_LABEL]: DKIM_KEY_LABEL_VALUE,
      },
      annotations: { [ANNOTATIONS.selector]: selector, [ANNOTATIONS.createdAt]: createdAt },
      ...(domain.metadata.uid
        ? {
            ownerReferences: [
              {
                apiVersion: 'sluice.dev/v1alpha1',
                kind: 'SendingDomain',
                name: domain.metadata.name,
                uid: domain.metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          }
        : {}),
    },
    stringData: Object.fromEntries(
      Object.entries(keys).map(([alg, pem]) => [keyFile(alg as DkimAlgorithm), pem]),
    ),
  };
}
