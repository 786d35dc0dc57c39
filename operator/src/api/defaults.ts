// The API server fills CRD defaults before the operator sees an object; applying the
// same defaults here keeps the operator correct for objects from older API servers
// and lets tests build objects the way kubectl would see them.
import { Value } from '@sinclair/typebox/value';
import { RelayPolicySpecSchema, SmtpUserSpecSchema } from './schema.ts';
import type { ObjectMeta, RelayPolicy, RelayPolicySpec, SmtpUser, SmtpUserSpec } from './types.ts';

export function relayPolicy(
  metadata: ObjectMeta,
  spec: Partial<RelayPolicySpec> & { hostname: string },
): RelayPolicy {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata,
    spec: Value.Default(RelayPolicySpecSchema, structuredClone(spec)) as RelayPolicySpec,
  };
}

export function smtpUser(
  metadata: ObjectMeta,
  spec: Omit<SmtpUserSpec, 'suspended' | 'passwordSecretRef'> & {
    suspended?: boolean;
    passwordSecretRef: { name: string; key?: string };
  },
): SmtpUser {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'SmtpUser',
    metadata,
    spec: Value.Default(SmtpUserSpecSchema, structuredClone(spec)) as SmtpUserSpec,
  };
}

export function withPolicyDefaults(policy: RelayPolicy): RelayPolicy {
  return {
    ...policy,
    spec: Value.Default(RelayPolicySpecSchema, structuredClone(policy.spec)) as RelayPolicySpec,
  };
}

export function withUserDefaults(user: SmtpUser): SmtpUser {
  return { ...user, spec: Value.Default(SmtpUserSpecSchema, structuredClone(user.spec)) as SmtpUserSpec };
}
