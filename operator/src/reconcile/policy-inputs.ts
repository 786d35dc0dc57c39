// What a RelayPolicy's reconcile reads besides the policy: its SmtpUsers with their
// passwords, and the Secrets the policy names (TLS, Redis password, smarthost
// credentials). Pure over lookups of the informer caches.
import { createHash } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { withUserDefaults } from '../api/defaults.ts';
import { SmtpUserSpecSchema } from '../api/schema.ts';
import type { RelayPolicy, SmtpUser } from '../api/types.ts';
import type { UserInput } from '../build/users.ts';
import type { KubeObject } from '../kube/client.ts';

export interface SecretObject extends KubeObject {
  type?: string;
  /** base64 values */
  data?: Record<string, string>;
}

export interface Lookup<T> {
  get(namespace: string, name: string): T | undefined;
  list(): T[];
}

/** The decoded value of one key of a Secret, or undefined when the Secret or key is missing. */
export function secretValue(secret: SecretObject | undefined, key: string): string | undefined {
  const raw = secret?.data?.[key];
  return raw === undefined ? undefined : Buffer.from(raw, 'base64').toString('utf8');
}

/** The SmtpUsers in the policy's namespace that name it in spec.policyRef. */
export function usersOfPolicy(users: readonly SmtpUser[], namespace: string, policyName: string): SmtpUser[] {
  return users.filter((u) => u.metadata.namespace === namespace && u.spec?.policyRef?.name === policyName);
}

// SmtpUsers with their defaults, by the cached object: an informer replaces the object
// when it changes, so each version is defaulted once, not on every reconcile of 100,000 users
const defaulted = new WeakMap<SmtpUser, SmtpUser>();

/**
 * Fills the spec's defaults in the object itself, which is then its own defaulted form:
 * for an informer's transform, so the cache holds each spec once and not a second,
 * defaulted copy beside it.
 */
export function withDefaultsInPlace(user: SmtpUser): SmtpUser {
  user.spec = Value.Default(SmtpUserSpecSchema, user.spec) as SmtpUser['spec'];
  return markDefaulted(user);
}

/** Says that the object's spec has its defaults already (a spec taken from a defaulted version). */
export function markDefaulted(user: SmtpUser): SmtpUser {
  defaulted.set(user, user);
  return user;
}

export function userInputs(users: readonly SmtpUser[], secrets: Lookup<SecretObject>): UserInput[] {
  return users.map((u) => {
    let user = defaulted.get(u);
    if (!user) {
      user = withUserDefaults(u);
      defaulted.set(u, user);
    }
    const ref = user.spec.passwordSecretRef;
    return { user, password: secretValue(secrets.get(user.metadata.namespace, ref.name), ref.key) };
  });
}

export interface PolicySecrets {
  /** One readable line per missing Secret or key */
  missing: string[];
  /** Changes when the TLS certificate does (it rolls the pods) */
  tlsVersion: string;
  smarthostUsername?: string;
}

export function readPolicySecrets(policy: RelayPolicy, secrets: Lookup<SecretObject>): PolicySecrets {
  const { namespace } = policy.metadata;
  const { spec } = policy;
  const missing: string[] = [];
  const need = (name: string, keys: string[], field: string): SecretObject | undefined => {
    const secret = secrets.get(namespace, name);
    if (!secret) {
      missing.push(
        `Secret ${name} (${field}) not found in namespace ${namespace}; relay pods cannot start until it exists`,
      );
      return undefined;
    }
    const absent = keys.filter((k) => secret.data?.[k] === undefined);
    if (absent.length > 0) {
      missing.push(`Secret ${name} (${field}) has no key ${absent.join(', ')}`);
    }
    return secret;
  };
  let tlsVersion = '';
  if (spec.tlsSecretName) {
    const tls = need(spec.tlsSecretName, ['tls.crt', 'tls.key'], 'spec.tlsSecretName');
    if (tls) {
      tlsVersion = createHash('sha256')
        .update(tls.data?.['tls.crt'] ?? '')
        .update(tls.data?.['tls.key'] ?? '')
        .digest('hex')
        .slice(0, 16);
    }
  }
  const redisRef = spec.redis?.passwordSecretRef;
  if (redisRef) need(redisRef.name, [redisRef.key], 'spec.redis.passwordSecretRef');
  const creds = spec.delivery.smarthost?.credentialsSecretRef;
  let smarthostUsername: string | undefined;
  if (creds) {
    const secret = need(
      creds.name,
      [creds.usernameKey, creds.passwordKey],
      'spec.delivery.smarthost.credentialsSecretRef',
    );
    smarthostUsername = secretValue(secret, creds.usernameKey);
  }
  return { missing, tlsVersion, ...(smarthostUsername ? { smarthostUsername } : {}) };
}

/** The Secrets a policy depends on, directly or through its users, as namespace/name keys. */
export function secretsOfPolicy(policy: RelayPolicy | undefined, users: readonly SmtpUser[]): Set<string> {
  const out = new Set<string>();
  for (const u of users) {
    const name = u.spec?.passwordSecretRef?.name;
    if (name) out.add(`${u.metadata.namespace}/${name}`);
  }
  if (!policy) return out;
  const ns = policy.metadata.namespace;
  const { spec } = policy;
  if (spec.tlsSecretName) out.add(`${ns}/${spec.tlsSecretName}`);
  if (spec.redis?.passwordSecretRef) out.add(`${ns}/${spec.redis.passwordSecretRef.name}`);
  const creds = spec.delivery?.smarthost?.credentialsSecretRef;
  if (creds) out.add(`${ns}/${creds.name}`);
  return out;
}
