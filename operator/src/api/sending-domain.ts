// The SendingDomain resource (sluice.dev/v1alpha1): a customer domain that a RelayPolicy's
// users send as. The operator generates its DKIM keys, says in status which DNS records to
// publish, checks them, and rotates the keys. Source of the generated CRD, like schema.ts.
import { type Static, type TSchema, Type } from '@sinclair/typebox';

function cel<T extends TSchema>(schema: T, rules: Array<{ rule: string; message: string }>): T {
  return { ...schema, 'x-kubernetes-validations': rules };
}

const DomainName = Type.String({
  minLength: 1,
  maxLength: 253,
  // lower case, as DNS names are compared; the relay's schema takes the same form
  pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$',
});

const Selector = Type.String({
  minLength: 1,
  maxLength: 55,
  pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$',
  description: 'A DKIM selector (one DNS label)',
});

/** A Go-style duration, as kubectl and CEL's duration() read it. */
const Duration = Type.String({ pattern: '^([0-9]+(\\.[0-9]+)?(h|m|s))+$' });

export const DEFAULT_SELECTORS = ['sluice1', 'sluice2'];
export const DEFAULT_ROTATION_PERIOD = '2160h';

export const SendingDomainSpecSchema = Type.Object(
  {
    domain: { ...DomainName, description: 'The domain of the header From (lower case)' },
    policyRef: Type.Object(
      { name: Type.String({ minLength: 1, maxLength: 253, description: 'RelayPolicy in this namespace' }) },
      {
        additionalProperties: false,
        description: 'The RelayPolicy whose relays sign for and accept this domain',
      },
    ),
    users: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s:]+$' }), {
        maxItems: 10_000,
        uniqueItems: true,
        description: 'SMTP usernames that may send as this domain; absent: every user of the policy',
      }),
    ),
    dkim: cel(
      Type.Object(
        {
          selectors: cel(
            Type.Array(Selector, {
              minItems: 2,
              maxItems: 2,
              default: DEFAULT_SELECTORS,
              description:
                'The two selectors rotation alternates between (as selector1/selector2 of Microsoft 365): with CNAME delegation the customer publishes both once. The Ed25519 key, when on, uses <selector>-ed25519',
            }),
            [{ rule: 'self[0] != self[1]', message: 'the two selectors must differ' }],
          ),
          rotationPeriod: {
            ...Duration,
            default: DEFAULT_ROTATION_PERIOD,
            description:
              'A new key is made this long after the current one started signing (default 90 days)',
          },
          rsaBits: Type.Union([Type.Literal(2048), Type.Literal(3072), Type.Literal(4096)], {
            default: 2048,
            description: 'Size of the rsa-sha256 key',
          }),
          ed25519: Type.Boolean({
            default: false,
            description:
              'Also sign with an ed25519-sha256 key (RFC 8463); receivers that do not know it use the RSA signature',
          }),
        },
        { additionalProperties: false, default: {}, description: 'DKIM keys and their rotation' },
      ),
      [
        {
          rule: "duration(self.rotationPeriod) >= duration('1h')",
          message: 'rotationPeriod must be at least 1h',
        },
      ],
    ),
    dns: Type.Object(
      {
        mode: Type.Union([Type.Literal('TXT'), Type.Literal('CNAME')], {
          default: 'TXT',
          description:
            'TXT: the customer publishes the keys; CNAME: the customer points the selectors into delegationZone once, and rotation needs no change of theirs',
        }),
        delegationZone: Type.Optional({
          ...DomainName,
          description:
            "The provider's zone the CNAMEs point into; the policy's spec.sendingDomains.delegationZone when absent",
        }),
        dmarcReports: Type.Optional(
          Type.String({
            minLength: 3,
            maxLength: 254,
            pattern: '^[!-;=?A-~]+@[!-;=?A-~]+$',
            description: 'Where aggregate DMARC reports go (rua=mailto:) in the suggested DMARC record',
          }),
        ),
      },
      { additionalProperties: false, default: {}, description: 'How the DNS records are published' },
    ),
  },
  { additionalProperties: false, description: 'A domain the relays sign for, and who may send as it' },
);

const DnsRecord = Type.Object({
  purpose: Type.Union(
    ['DKIM', 'SPF', 'DMARC'].map((p) => Type.Literal(p)),
    { description: 'What the record is for: DKIM, SPF or DMARC' },
  ),
  name: Type.String({ description: 'Fully qualified name of the record' }),
  type: Type.Union([Type.Literal('TXT'), Type.Literal('CNAME')], { description: 'DNS record type' }),
  value: Type.String({ description: 'The record as one string' }),
  strings: Type.Optional(
    Type.Array(Type.String(), {
      description: 'A TXT value as the 255-byte character-strings of its zone-file form',
    }),
  ),
  zone: Type.Union([Type.Literal('customer'), Type.Literal('provider')], {
    description: "customer: in the domain's own DNS; provider: in the delegation zone",
  }),
  selector: Type.Optional(Type.String({ description: 'The DKIM selector of a DKIM record' })),
});

const KeyState = Type.Object({
  selector: Type.String({ description: 'DKIM selector (s=) of the key' }),
  algorithms: Type.Array(Type.String(), { description: 'rsa-sha256 and, when configured, ed25519-sha256' }),
  secretName: Type.String({ description: 'The Secret holding the private key (never shown here)' }),
  state: Type.Union(
    ['Pending', 'Active', 'Retiring'].map((s) => Type.Literal(s)),
    {
      description:
        'Pending: waits for DNS; Active: signs; Retiring: replaced, stays published until removableAfter',
    },
  ),
  createdAt: Type.String({ format: 'date-time', description: 'When the key was generated' }),
  activeSince: Type.Optional(
    Type.String({ format: 'date-time', description: 'When the key started signing' }),
  ),
  retiringSince: Type.Optional(
    Type.String({ format: 'date-time', description: 'When a newer key replaced it for signing' }),
  ),
  removableAfter: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'From then on its DNS record may go (queue lifetime plus a margin after it last signed)',
    }),
  ),
  published: Type.Boolean({ description: 'DNS serves this key' }),
});

export const SendingDomainStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The metadata.generation this status describes' }),
    ),
    conditions: Type.Optional(
      Type.Array(
        Type.Object({
          type: Type.String({ description: 'DkimPublished, SpfAuthorizesRelay, DmarcPolicy, Ready' }),
          status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')], {
            description: 'True, False or Unknown',
          }),
          reason: Type.String({ description: 'CamelCase reason' }),
          message: Type.String({ description: 'What happened, for a human' }),
          lastTransitionTime: Type.String({
            format: 'date-time',
            description: 'When the status last changed',
          }),
          observedGeneration: Type.Optional(
            Type.Integer({ description: 'The metadata.generation the condition was set for' }),
          ),
        }),
        {
          description: 'Current state, as Kubernetes conditions',
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['type'],
        },
      ),
    ),
    signingSelector: Type.Optional(Type.String({ description: 'The selector that signs mail now' })),
    nextRotation: Type.Optional(
      Type.String({ format: 'date-time', description: 'When the next key is due to be generated' }),
    ),
    keys: Type.Optional(Type.Array(KeyState, { description: "The domain's DKIM keys and their state" })),
    records: Type.Optional(Type.Array(DnsRecord, { description: 'The DNS records to publish' })),
  },
  { description: 'What the operator sees: conditions, keys and the DNS records to publish' },
);

export type SendingDomainSpec = Static<typeof SendingDomainSpecSchema>;
export type SendingDomainStatus = Static<typeof SendingDomainStatusSchema>;
export type DnsRecord = Static<typeof DnsRecord>;
export type KeyStatus = Static<typeof KeyState>;

/** Fields of a RelayPolicy that its SendingDomains share (spec.sendingDomains). */
export const PolicySendingDomainsSchema = Type.Object(
  {
    headerFrom: Type.Union([Type.Literal('off'), Type.Literal('enforce')], {
      default: 'off',
      description:
        "enforce: a user's header From and Sender must be one of its allowedSenders or in a SendingDomain that admits it (relay senders.headerFrom)",
    }),
    delegationZone: Type.Optional({
      ...DomainName,
      description: "The provider's zone that SendingDomains in CNAME mode delegate their selectors into",
    }),
    defaultSigner: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 253,
        description:
          "A SendingDomain in this namespace (the provider's own domain) whose key signs mail from domains without a verified key of their own (relay dkim.defaultSigner); give it users: [] so that no user sends as it",
      }),
    ),
    spfInclude: Type.Optional({
      ...DomainName,
      description:
        'The domain customers include in their SPF record (include:<this>); default spf.<hostname>. With ownIpWatch.ips the check evaluates SPF for those addresses instead',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Settings the SendingDomains of this policy share',
  },
);
