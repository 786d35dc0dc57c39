// Turns the TypeBox schemas into CustomResourceDefinitions. Kubernetes wants a
// structural OpenAPI v3 subset: no additionalProperties: false (pruning does that job),
// no uniqueItems (x-kubernetes-list-type: set instead), enums instead of anyOf of
// constants, no $id, and every node typed.
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import {
  GROUP,
  RELAY_POLICY_NAME_RULES,
  RelayPolicySpecSchema,
  RelayPolicyStatusSchema,
  SmtpUserSpecSchema,
  SmtpUserStatusSchema,
  VERSION,
} from './schema.ts';
import { SendingDomainSpecSchema, SendingDomainStatusSchema } from './sending-domain.ts';

type Json = Record<string, unknown>;

const DROP = new Set(['$id', 'additionalProperties', 'uniqueItems', 'anyOf', 'const']);

/** The structural OpenAPI form of a TypeBox schema. */
export function structural(schema: TSchema): Json {
  const out: Json = {};
  const literals = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const);
  if (schema['x-kubernetes-int-or-string']) {
    // a number or a string (a quantity): Kubernetes' one structural anyOf, the string's
    // pattern beside it (it applies to strings only)
    const string = (schema.anyOf as TSchema[]).find((s) => s.type === 'string');
    const integer = (schema.anyOf as TSchema[]).find((s) => s.type === 'integer');
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
    if (string?.pattern) out.pattern = string.pattern;
    // the integer's bounds beside them too (they apply to numbers only)
    for (const bound of ['minimum', 'maximum'] as const) {
      if (typeof integer?.[bound] === 'number') out[bound] = integer[bound];
    }
  } else if (literals?.every((v) => v !== undefined)) {
    out.type = typeof literals[0] === 'number' ? 'integer' : 'string';
    out.enum = literals;
  } else if (schema.anyOf) {
    throw new Error(`unsupported anyOf in CRD schema: ${JSON.stringify(schema).slice(0, 120)}`);
  }
  for (const [key, value] of Object.entries(schema)) {
    if (DROP.has(key)) continue;
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, TSchema>).map(([k, v]) => [k, structural(v)]),
      );
    } else if (key === 'items') {
      out.items = structural(value as TSchema);
    } else if (key === 'patternProperties') {
      // Type.Record(String, X): a map
      const [inner] = Object.values(value as Record<string, TSchema>);
      if (inner) out.additionalProperties = structural(inner);
    } else if (key === 'default' && schema.type === 'object' && schema.properties) {
      // an object default carries its fields' defaults: the API server checks a default
      // against the object's CEL rules, which read those fields
      const { default: _d, ...withoutDefault } = schema;
      out.default = Value.Default(withoutDefault, structuredClone(value));
    } else if ((key === 'exclusiveMinimum' || key === 'exclusiveMaximum') && typeof value === 'number') {
      // JSON Schema's numeric bound is OpenAPI 3.0's bound plus a boolean
      out[key === 'exclusiveMinimum' ? 'minimum' : 'maximum'] = value;
      out[key] = true;
    } else {
      out[key] = value;
    }
  }
  // a defaulted field is filled in before validation, so it is not required of the user
  if (Array.isArray(out.required) && schema.properties) {
    const props = schema.properties as Record<string, TSchema>;
    const required = (out.required as string[]).filter((k) => props[k]?.default === undefined);
    if (required.length > 0) out.required = required;
    else delete out.required;
  }
  if (schema.uniqueItems && (schema.items as TSchema | undefined)?.type !== 'object') {
    out['x-kubernetes-list-type'] = 'set';
  }
  if (schema.type === 'object' && !out.properties && !out.additionalProperties) {
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  return out;
}

interface CrdOptions {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  spec: TSchema;
  status: TSchema;
  description: string;
  columns: Array<{ name: string; type: string; jsonPath: string; description?: string; priority?: number }>;
  scale?: boolean;
  /** CEL rules on the whole object (the only place they can read metadata.name) */
  validations?: Array<{ rule: string; message: string }>;
}

function crd(o: CrdOptions): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${o.plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'sluice' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: o.kind,
        listKind: `${o.kind}List`,
        plural: o.plural,
        singular: o.singular,
        shortNames: o.shortNames,
        categories: ['sluice'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: o.description,
              required: ['spec'],
              ...(o.validations ? { 'x-kubernetes-validations': o.validations } : {}),
              properties: {
                apiVersion: {
                  type: 'string',
                  description: `The versioned schema of this object: ${GROUP}/${VERSION}`,
                },
                kind: { type: 'string', description: `The kind of this object: ${o.kind}` },
                // the API server allows nothing but the type here: ObjectMeta's own description shows
                metadata: { type: 'object' },
                spec: structural(o.spec),
                status: structural(o.status),
              },
            },
          },
          subresources: {
            status: {},
            ...(o.scale
              ? {
                  scale: {
                    specReplicasPath: '.spec.replicas',
                    statusReplicasPath: '.status.replicas',
                    labelSelectorPath: '.status.selector',
                  },
                }
              : {}),
          },
          additionalPrinterColumns: [
            ...o.columns,
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
        },
      ],
    },
  };
}

const ready = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' };
const reason = {
  name: 'Reason',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
  priority: 1,
};

export function relayPolicyCrd(): Json {
  return crd({
    kind: 'RelayPolicy',
    plural: 'relaypolicies',
    singular: 'relaypolicy',
    shortNames: ['rp'],
    spec: RelayPolicySpecSchema,
    status: RelayPolicyStatusSchema,
    description:
      'A cluster of Sluice SMTP relay pods and the rules they enforce: listeners, limits, DNS blocklists, blocked attachments, rate limits and delivery.',
    scale: true,
    validations: RELAY_POLICY_NAME_RULES,
    columns: [
      { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas' },
      { name: 'Ready-Pods', type: 'integer', jsonPath: '.status.readyReplicas' },
      { name: 'Users', type: 'integer', jsonPath: '.status.userCount' },
      ready,
      reason,
      { name: 'Hostname', type: 'string', jsonPath: '.spec.hostname', priority: 1 },
      { name: 'Relay-Image', type: 'string', jsonPath: '.status.relayImage', priority: 1 },
    ],
  });
}

export function smtpUserCrd(): Json {
  return crd({
    kind: 'SmtpUser',
    plural: 'smtpusers',
    singular: 'smtpuser',
    shortNames: ['su'],
    spec: SmtpUserSpecSchema,
    status: SmtpUserStatusSchema,
    description: 'A customer account that may relay mail through the RelayPolicy it names.',
    columns: [
      { name: 'Username', type: 'string', jsonPath: '.spec.username' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policyRef.name' },
      { name: 'Suspended', type: 'boolean', jsonPath: '.spec.suspended' },
      ready,
      {
        name: 'Abuse',
        type: 'string',
        jsonPath: '.status.conditions[?(@.type=="AbuseSuspected")].reason',
        description:
          'Why abuse is suspected (VolumeSpike, ManyClientIps, MostlyRejected, InvalidRecipients, SpamBlocked), else NoneDetected',
      },
      ...(['delivered', 'deferred', 'bounced'] as const).map((result) => ({
        name: `${result[0]?.toUpperCase()}${result.slice(1)}`,
        type: 'integer',
        jsonPath: `.status.usage.deliveries.${result}`,
        description: `Recipient delivery attempts ${result} today (UTC); status.usage.deliveries.classes says by which class of reply`,
        priority: 1,
      })),
      reason,
    ],
  });
}

const condition = (type: string, field: 'status' | 'reason') =>
  `.status.conditions[?(@.type=="${type}")].${field}`;

export function sendingDomainCrd(): Json {
  return crd({
    kind: 'SendingDomain',
    plural: 'sendingdomains',
    singular: 'sendingdomain',
    shortNames: ['sd'],
    spec: SendingDomainSpecSchema,
    status: SendingDomainStatusSchema,
    description:
      "A customer domain that a RelayPolicy's users send as: its DKIM keys (generated, rotated), who may use it, and the DNS records to publish and whether DNS serves them.",
    columns: [
      { name: 'Domain', type: 'string', jsonPath: '.spec.domain' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policyRef.name', priority: 1 },
      { name: 'Selector', type: 'string', jsonPath: '.status.signingSelector' },
      { name: 'DKIM', type: 'string', jsonPath: condition('DkimPublished', 'status') },
      { name: 'SPF', type: 'string', jsonPath: condition('SpfAuthorizesRelay', 'status') },
      {
        name: 'DMARC',
        type: 'string',
        jsonPath: condition('DmarcPolicy', 'reason'),
        description: 'The published DMARC policy: None, Quarantine, Reject, or Missing',
      },
      ready,
      reason,
      { name: 'Next-Rotation', type: 'date', jsonPath: '.status.nextRotation', priority: 1 },
    ],
  });
}
