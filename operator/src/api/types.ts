// TypeScript types of the custom resources, derived from their schemas.
import type { Static } from '@sinclair/typebox';
import type {
  RelayPolicySpecSchema,
  RelayPolicyStatusSchema,
  SmtpUserSpecSchema,
  SmtpUserStatusSchema,
} from './schema.ts';
import type { SendingDomainSpec, SendingDomainStatus } from './sending-domain.ts';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

export type RelayPolicySpec = Static<typeof RelayPolicySpecSchema>;
export type SmtpUserSpec = Static<typeof SmtpUserSpecSchema>;

export interface RelayPolicy {
  apiVersion: 'sluice.dev/v1alpha1';
  kind: 'RelayPolicy';
  metadata: ObjectMeta;
  spec: RelayPolicySpec;
  status?: Static<typeof RelayPolicyStatusSchema>;
}

export interface SmtpUser {
  apiVersion: 'sluice.dev/v1alpha1';
  kind: 'SmtpUser';
  metadata: ObjectMeta;
  spec: SmtpUserSpec;
  status?: Static<typeof SmtpUserStatusSchema>;
}

export interface SendingDomain {
  apiVersion: 'sluice.dev/v1alpha1';
  kind: 'SendingDomain';
  metadata: ObjectMeta;
  spec: SendingDomainSpec;
  status?: SendingDomainStatus;
}

export interface Condition {
  type:
    | 'Ready'
    | 'Progressing'
    | 'Degraded'
    | 'AbuseSuspected'
    | 'DkimPublished'
    | 'SpfAuthorizesRelay'
    | 'DmarcPolicy';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}
