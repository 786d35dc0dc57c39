// The sluice.dev/v1alpha1 API: RelayPolicy and SmtpUser. The policy parts of a
// RelayPolicy are the relay's own config schemas, imported from the relay package, so
// what kubectl accepts, what the operator writes and what the relay validates are one
// schema. The CRD YAML in crds/ is generated from this file (`make generate`).
import { type TSchema, Type } from '@sinclair/typebox';
import {
  AbuseSchema,
  AttachmentsSchema,
  AuthLockoutSchema,
  AuthSchema,
  DeliverySchema,
  DmarcPrecheckSchema,
  DnsblSchema,
  DrainDeadlineSchema,
  HeadersSchema,
  LimitsSchema,
  ListenerSchema,
  OwnIpWatchSchema,
  PostmasterSchema,
  RateLimitSchema,
  RateLimitsSchema,
  RedisSchema,
  RetrySchema,
  ShapingSchema,
  ShutdownDelaySchema,
  SmarthostSchema,
  SpoolReserveSchema,
  SuppressionSchema,
  UsageSchema,
} from '@sluice/relay/config-schema';
import { PolicySendingDomainsSchema } from './sending-domain.ts';

export const GROUP = 'sluice.dev';
export const VERSION = 'v1alpha1';

/** Extra keywords for the CRD (CEL rules, list types); ajv never sees these schemas. */
function cel<T extends TSchema>(schema: T, rules: Array<{ rule: string; message: string }>): T {
  return { ...schema, 'x-kubernetes-validations': rules };
}

/** A Kubernetes quantity as Kubernetes takes it: a number (cpu: 1) or a string (500m, 256Mi). */
const Quantity = Type.Union(
  [Type.Integer({ minimum: 0 }), Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$' })],
  {
    'x-kubernetes-int-or-string': true,
    description: 'A Kubernetes quantity such as 1, 500m, 256Mi or 10Gi',
  },
);

const SecretKeyRef = (what: string, defaultKey: string) =>
  Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 253, description: `Secret holding the ${what}` }),
      key: Type.String({ minLength: 1, default: defaultKey, description: 'Key in the Secret' }),
    },
    { additionalProperties: false, description: `Secret key holding the ${what}` },
  );

// one condition per type: a map keyed by type, as Kubernetes' own conditions are
const Conditions = Type.Array(
  Type.Object({
    type: Type.String({ description: 'Ready, Progressing, Degraded (policies) or AbuseSuspected (users)' }),
    status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')], {
      description: 'True, False or Unknown',
    }),
    reason: Type.String({ description: 'CamelCase reason' }),
    message: Type.String({ description: 'What happened, for a human' }),
    lastTransitionTime: Type.String({ format: 'date-time', description: 'When the status last changed' }),
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The metadata.generation the condition was set for' }),
    ),
  }),
  {
    description: 'Current state, as Kubernetes conditions',
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  },
);

const Autoscaling = cel(
  Type.Object(
    {
      enabled: Type.Boolean({ default: false, description: 'Create a HorizontalPodAutoscaler' }),
      minReplicas: Type.Integer({ minimum: 1, maximum: 1000, default: 2, description: 'Fewest relay pods' }),
      maxReplicas: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'Most relay pods' }),
      targetCPUUtilizationPercentage: Type.Integer({
        minimum: 1,
        maximum: 100,
        default: 70,
        description: 'Average CPU use, in percent of the request, that the autoscaler aims for',
      }),
    },
    { additionalProperties: false, default: {}, description: 'Horizontal autoscaling on CPU' },
  ),
  [{ rule: 'self.minReplicas <= self.maxReplicas', message: 'minReplicas must not exceed maxReplicas' }],
);

const { smarthost: _smarthost, ...deliveryProperties } = DeliverySchema.properties;
const { passwordFile: _redisPasswordFile, ...redisProperties } = RedisSchema.properties;
const { username: _u, passwordFile: _p, ...smarthostProperties } = SmarthostSchema.properties;

/** Where the CA certificates delivery trusts besides the system ones come from (relay tls.trustedCaFile). */
const TrustedCa = cel(
  Type.Object(
    {
      configMapName: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 253,
          description: 'ConfigMap holding the PEM CA certificates (a trust-manager Bundle, say)',
        }),
      ),
      secretName: Type.Optional(
        Type.String({ minLength: 1, maxLength: 253, description: 'Secret holding the PEM CA certificates' }),
      ),
      key: Type.String({
        minLength: 1,
        maxLength: 253,
        default: 'ca.crt',
        description: 'Key in the ConfigMap or Secret',
      }),
    },
    {
      additionalProperties: false,
      description:
        'PEM CA certificates trusted besides the system ones when delivery verifies MX certificates (MTA-STS enforce), MTA-STS policy hosts and the smarthost: a private PKI. The relays re-read the file when the ConfigMap or Secret changes',
    },
  ),
  [
    {
      rule: 'has(self.configMapName) != has(self.secretName)',
      message: 'trustedCa names either a configMapName or a secretName',
    },
  ],
);

const Delivery = cel(
  Type.Object(
    {
      ...deliveryProperties,
      trustedCa: Type.Optional(TrustedCa),
      smarthost: Type.Optional(
        Type.Object(
          {
            ...smarthostProperties,
            credentialsSecretRef: Type.Optional(
              Type.Object(
                {
                  name: Type.String({ minLength: 1, description: 'Secret with the smarthost credentials' }),
                  usernameKey: Type.String({ default: 'username', description: 'Key of the user name' }),
                  passwordKey: Type.String({ default: 'password', description: 'Key of the password' }),
                },
                {
                  additionalProperties: false,
                  description: 'Secret holding the AUTH credentials for the smarthost',
                },
              ),
            ),
          },
          {
            additionalProperties: false,
            description: 'The relay every message is handed to (smarthost mode)',
          },
        ),
      ),
      retry: cel(
        Type.Object(RetrySchema.properties, {
          additionalProperties: false,
          default: {},
          description: 'When a deferred message is tried again',
        }),
        [
          {
            rule: 'self.minBackoffSeconds <= self.maxBackoffSeconds',
            message: 'minBackoffSeconds must not exceed maxBackoffSeconds',
          },
        ],
      ),
    },
    {
      additionalProperties: false,
      default: {},
      description: 'Delivery: direct to MX or through a smarthost',
    },
  ),
  [
    {
      rule: "self.mode != 'smarthost' || has(self.smarthost)",
      message: 'smarthost mode needs delivery.smarthost',
    },
  ],
);

/**
 * The longest RelayPolicy name whose children are valid: the StatefulSet `<name>-relay`
 * gives its pods the label `controller-revision-hash: <name>-relay-<hash of up to 10>`,
 * which must fit in 63 characters (and `<name>-relay-headless` is a Service).
 */
export const RELAY_POLICY_NAME_MAX = 63 - '-relay'.length - 11;

/** Admission rules on a RelayPolicy's name (CEL on the object root). */
export const RELAY_POLICY_NAME_RULES = [
  {
    rule: `self.metadata.name.size() <= ${RELAY_POLICY_NAME_MAX}`,
    message: `metadata.name may have at most ${RELAY_POLICY_NAME_MAX} characters: the relay pods and Services are named from it (<name>-relay-<n>, <name>-relay-headless) and must fit in 63`,
  },
  {
    rule: "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    message:
      "metadata.name must start with a letter and hold only a-z, 0-9 and '-' (no dots): the relay's Services are named from it",
  },
];

const LabelSelector = Type.Object(
  {
    matchLabels: Type.Optional(
      Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 63 }), {
        maxProperties: 50,
        description: 'Labels an SmtpUser must carry, all of them',
      }),
    ),
    matchExpressions: Type.Optional(
      Type.Array(
        cel(
          Type.Object(
            {
              key: Type.String({ minLength: 1, maxLength: 317, description: 'The label key' }),
              operator: Type.Union(
                ['In', 'NotIn', 'Exists', 'DoesNotExist'].map((o) => Type.Literal(o)),
                { description: 'In, NotIn, Exists or DoesNotExist' },
              ),
              values: Type.Optional(
                Type.Array(Type.String({ maxLength: 63 }), {
                  maxItems: 100,
                  description: 'Values for In and NotIn',
                }),
              ),
            },
            { additionalProperties: false, description: 'One label requirement' },
          ),
          [
            {
              rule: "self.operator == 'In' || self.operator == 'NotIn' ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
              message: 'In and NotIn need values; Exists and DoesNotExist take none',
            },
          ],
        ),
        { maxItems: 20, description: 'Label requirements an SmtpUser must meet, all of them' },
      ),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Which SmtpUsers naming this policy it accepts, by their labels (a standard label selector); absent: all of them. The others are Ready False, NotSelected',
  },
);

// with autoscaling on, the HPA owns the replica count: `kubectl scale` (or an edit of
// spec.replicas) would be accepted and silently ignored, so it is refused instead
const REPLICAS_OWNED_BY_HPA = {
  rule: '!self.autoscaling.enabled || !oldSelf.autoscaling.enabled || self.replicas == oldSelf.replicas',
  message:
    'spec.replicas cannot change while spec.autoscaling.enabled is true: the HorizontalPodAutoscaler owns the replica count; change spec.autoscaling.minReplicas or maxReplicas instead',
};

export const RelayPolicySpecSchema = cel(
  Type.Object(
    {
      replicas: Type.Integer({
        minimum: 0,
        maximum: 1000,
        default: 2,
        description: 'Relay pods (without autoscaling)',
      }),
      autoscaling: Autoscaling,
      // no default: a default would be written into every policy at creation and pin it
      image: Type.Optional(
        Type.String({
          minLength: 1,
          description:
            "Relay image; absent: the relay of the operator's own release, so upgrading the operator rolls the relays to it",
        }),
      ),
      imagePullPolicy: Type.Union(
        [Type.Literal('Always'), Type.Literal('IfNotPresent'), Type.Literal('Never')],
        {
          default: 'IfNotPresent',
          description: 'When the kubelet pulls the relay image',
        },
      ),
      resources: Type.Object(
        {
          requests: Type.Object(
            { cpu: Type.Optional(Quantity), memory: Type.Optional(Quantity) },
            { default: {}, description: 'What the scheduler reserves per pod (cpu, memory)' },
          ),
          limits: Type.Object(
            { cpu: Type.Optional(Quantity), memory: Type.Optional(Quantity) },
            { default: {}, description: 'The most a pod may use (cpu, memory)' },
          ),
        },
        { additionalProperties: false, default: {}, description: 'Relay container resources' },
      ),
      nodeSelector: Type.Optional(
        Type.Record(Type.String(), Type.String(), { description: 'Pod node selector' }),
      ),
      tolerations: Type.Optional(
        Type.Array(Type.Object({}, { 'x-kubernetes-preserve-unknown-fields': true }), {
          description: 'Pod tolerations (core/v1 Toleration)',
        }),
      ),
      affinity: Type.Optional(
        Type.Object(
          {},
          {
            'x-kubernetes-preserve-unknown-fields': true,
            description: 'Pod affinity and anti-affinity (core/v1 Affinity)',
          },
        ),
      ),
      topologySpreadConstraints: Type.Optional(
        Type.Array(
          Type.Object(
            {},
            { 'x-kubernetes-preserve-unknown-fields': true, description: 'core/v1 TopologySpreadConstraint' },
          ),
          {
            description:
              'Pod topology spread (core/v1 TopologySpreadConstraint); absent: spread across nodes and zones where possible (ScheduleAnyway); [] for none',
          },
        ),
      ),
      priorityClassName: Type.Optional(
        Type.String({ minLength: 1, maxLength: 253, description: 'PriorityClass of the relay pods' }),
      ),
      userSelector: Type.Optional(LabelSelector),
      hostname: Type.String({
        minLength: 1,
        maxLength: 253,
        description: 'Name in the SMTP greeting and Received headers',
      }),
      postmaster: Type.Optional(PostmasterSchema),
      // a map keyed by name (server-side apply merges listeners by name); a port used twice
      // is refused at admission, not when the relay fails to bind it
      listeners: cel(
        Type.Array(ListenerSchema, {
          minItems: 1,
          maxItems: 16,
          default: [
            { name: 'submission', port: 587, tls: 'starttls' },
            { name: 'smtps', port: 465, tls: 'implicit' },
          ],
          description: 'SMTP listeners; names and ports unique',
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['name'],
        }),
        [
          {
            rule: 'self.all(l, self.exists_one(m, m.port == l.port))',
            message: 'listener ports must be unique',
          },
        ],
      ),
      tlsSecretName: Type.Optional(
        Type.String({
          minLength: 1,
          description: 'kubernetes.io/tls Secret with the certificate; self-signed if absent',
        }),
      ),
      service: Type.Object(
        {
          type: Type.Union(
            [Type.Literal('ClusterIP'), Type.Literal('NodePort'), Type.Literal('LoadBalancer')],
            {
              default: 'LoadBalancer',
              description: 'Service type of the SMTP Service',
            },
          ),
          externalTrafficPolicy: Type.Union([Type.Literal('Local'), Type.Literal('Cluster')], {
            default: 'Local',
            description: 'Local keeps the client IP (use PROXY protocol listeners otherwise)',
          }),
          annotations: Type.Optional(
            Type.Record(Type.String(), Type.String(), {
              description: "Annotations of the SMTP Service (a cloud load balancer's settings)",
            }),
          ),
        },
        { additionalProperties: false, default: {}, description: 'The SMTP Service' },
      ),
      limits: Type.Object(LimitsSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'Per-message and per-connection limits',
      }),
      auth: Type.Object(AuthSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'SMTP AUTH',
      }),
      attachments: Type.Object(AttachmentsSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'Blocked attachment types',
      }),
      headers: Type.Object(HeadersSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'What the relays do to the header section of submitted mail (Bcc removal)',
      }),
      rateLimits: Type.Object(RateLimitsSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'Rate limits, shared by all relay pods with spec.redis',
      }),
      authLockout: Type.Object(AuthLockoutSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'Lockout after repeated AUTH failures',
      }),
      dnsbl: cel(
        Type.Object(DnsblSchema.properties, {
          additionalProperties: false,
          default: {},
          description: 'DNS blocklist checks of the client IP',
        }),
        [
          {
            rule: 'self.minTtlSeconds <= self.maxTtlSeconds',
            message: 'minTtlSeconds must not exceed maxTtlSeconds',
          },
        ],
      ),
      delivery: Delivery,
      dmarcPrecheck: Type.Object(DmarcPrecheckSchema.properties, {
        additionalProperties: false,
        default: {},
        description:
          'DMARC pre-check of the header From domain at the end of DATA: reject refuses mail the receiver would refuse or junk for DMARC, warn accepts and counts it, off looks nothing up; resolvers are its DNS servers',
      }),
      usage: Type.Object(UsageSchema.properties, {
        additionalProperties: false,
        default: {},
        description: 'Usage per user per hour and per day (in Redis with spec.redis)',
      }),
      abuse: Type.Object(AbuseSchema.properties, {
        additionalProperties: false,
        default: {},
        description:
          'Abuse detection: flags show as the AbuseSuspected condition of the SmtpUser; with autoSuspend the relays refuse the user',
      }),
      shaping: Type.Object(
        {
          ...ShapingSchema.properties,
          // a list keyed by name: a group named twice is refused at admission
          groups: Type.Optional(
            Type.Array(ShapingSchema.properties.groups.items, {
              ...ShapingSchema.properties.groups,
              'x-kubernetes-list-type': 'map',
              'x-kubernetes-list-map-keys': ['name'],
            }),
          ),
        },
        {
          additionalProperties: false,
          default: {},
          description:
            "Limits per destination group (Google, Microsoft, …) held in Redis for all the policy's relays together, slowed down on every relay by a throttling reply; groups are matched by the first MX host, first match wins",
        },
      ),
      suppression: Type.Object(SuppressionSchema.properties, {
        additionalProperties: false,
        default: {},
        description:
          'Recipients that bounced with one of classes are refused at RCPT (550 5.1.1) for ttlSeconds, by every relay of the policy',
      }),
      ownIpWatch: Type.Object(OwnIpWatchSchema.properties, {
        additionalProperties: false,
        default: {},
        description: "Periodic DNSBL check of the relays' egress addresses (sluice_own_ip_listed)",
      }),
      redis: Type.Optional(
        Type.Object(
          {
            // the relay's own Redis fields; the password comes from a Secret instead of a file
            ...redisProperties,
            passwordSecretRef: Type.Optional(SecretKeyRef('Redis password', 'password')),
            onDown: Type.Union([Type.Literal('local'), Type.Literal('tempfail')], {
              default: 'local',
              description:
                'While Redis is unreachable: local keeps relaying on per-pod state; tempfail answers 4xx',
            }),
          },
          {
            additionalProperties: false,
            description:
              'Shared state for rate limits, lockouts and the DNSBL cache; without it each pod counts alone',
          },
        ),
      ),
      // existing volumes can grow (where the StorageClass allows it) but not shrink or move
      spool: cel(
        Type.Object(
          {
            size: Type.String({
              default: '10Gi',
              description:
                'Spool volume per pod; can grow (where the StorageClass allows expansion), not shrink',
            }),
            storageClassName: Type.Optional(
              Type.String({ description: 'Storage class of the spool volumes; fixed once set' }),
            ),
            reserveMegabytes: Type.Optional(SpoolReserveSchema),
          },
          { additionalProperties: false, default: {}, description: 'The durable queue volume of each pod' },
        ),
        [
          {
            rule: '!has(self.size) || !has(oldSelf.size) || !isQuantity(self.size) || !isQuantity(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0',
            message: 'spool.size cannot shrink: existing spool volumes cannot be made smaller',
          },
          {
            rule: "(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')",
            message: 'spool.storageClassName cannot change: existing spool volumes keep their storage class',
          },
        ],
      ),
      drainDeadlineSeconds: Type.Integer({
        minimum: 0,
        maximum: DrainDeadlineSchema.maximum,
        default: 60,
        description: 'A stopping pod delivers this long, then hands its queue to the other pods',
      }),
      tracing: Type.Object(
        {
          otlpEndpoint: Type.Optional(
            Type.String({
              minLength: 1,
              description:
                'OTLP/HTTP endpoint for traces (OTEL_EXPORTER_OTLP_ENDPOINT of the relay pods); none: no tracing',
            }),
          ),
        },
        { additionalProperties: false, default: {}, description: 'OpenTelemetry traces of the relay pods' },
      ),
      rollout: Type.Object(
        {
          shutdownDelaySeconds: Type.Integer({
            minimum: ShutdownDelaySchema.minimum,
            maximum: ShutdownDelaySchema.maximum,
            default: 10,
            description:
              'A stopping pod reports not ready and keeps accepting this long before its listeners close, so endpoints and load balancers stop sending first (the preStop wait, kept by the relay itself)',
          }),
        },
        {
          additionalProperties: false,
          default: {},
          description:
            'How a pod stops: readiness off, the shutdown delay, then listeners closed and the queue drained; terminationGracePeriodSeconds covers all of it',
        },
      ),
      workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.String({ pattern: '^auto$' })], {
        'x-kubernetes-int-or-string': true,
        default: 1,
        description:
          "Relay processes per pod, sharing the pod's SMTP ports and spool; auto: one per CPU of the pod's CPU limit (resources.limits.cpu, rounded down), or of the node without a limit. A change rolls the pods. Above 1, use spec.redis: rate limits, lockouts and usage are then counted across the processes, as across pods",
      }),
      logLevel: Type.Union(
        ['fatal', 'error', 'warn', 'info', 'debug'].map((l) => Type.Literal(l)),
        { default: 'info', description: 'Log level of the relay pods' },
      ),
      sendingDomains: PolicySendingDomainsSchema,
    },
    { additionalProperties: false, description: 'The relay cluster and the rules it enforces' },
  ),
  [REPLICAS_OWNED_BY_HPA],
);

export const RelayPolicyStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The metadata.generation this status describes' }),
    ),
    conditions: Type.Optional(Conditions),
    replicas: Type.Optional(Type.Integer({ description: 'Pods the StatefulSet has' })),
    readyReplicas: Type.Optional(Type.Integer({ description: 'Pods ready to take mail' })),
    userCount: Type.Optional(
      Type.Integer({
        description: 'SmtpUsers this policy accepts: they name it and match spec.userSelector',
      }),
    ),
    selector: Type.Optional(Type.String({ description: 'Label selector of the pods (scale subresource)' })),
    operatorVersion: Type.Optional(
      Type.String({ description: 'Release of the operator that last reconciled the policy' }),
    ),
    relayImage: Type.Optional(
      Type.String({
        description: 'Image the relay pods are given: spec.image, or the relay of the operator release',
      }),
    ),
  },
  { description: 'What the operator observed and did, written by the operator' },
);

export const SmtpUserSpecSchema = Type.Object(
  {
    username: Type.String({
      minLength: 1,
      maxLength: 256,
      pattern: '^[^\\s:]+$',
      description: 'SMTP AUTH username',
    }),
    policyRef: Type.Object(
      { name: Type.String({ minLength: 1, maxLength: 253, description: 'RelayPolicy in this namespace' }) },
      { additionalProperties: false, description: 'The RelayPolicy whose relays this user may send through' },
    ),
    passwordSecretRef: SecretKeyRef('password (plain, or a scrypt/argon2id/bcrypt hash)', 'password'),
    allowedSenders: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 320, pattern: '^[^\\s<>]+$' }), {
        maxItems: 100,
        description:
          'MAIL FROM addresses (user@example.com) or domains (@example.com); absent allows any. At most 100, which bounds the size of a users shard',
      }),
    ),
    rateLimits: Type.Optional(
      Type.Array(RateLimitSchema, { maxItems: 10, description: "Replaces the policy's perUser limits" }),
    ),
    suspended: Type.Boolean({ default: false, description: 'A suspended user cannot authenticate' }),
  },
  {
    additionalProperties: false,
    description: 'The account: its username, password, policy and what it may send',
  },
);

export const SmtpUserStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The metadata.generation this status describes' }),
    ),
    conditions: Type.Optional(Conditions),
    usage: Type.Optional(
      Type.Object(
        {},
        {
          'x-kubernetes-preserve-unknown-fields': true,
          description:
            "Today's usage as the relays count it (messages, recipients, bytes, refusals, client IPs; deliveries: recipient delivery attempts delivered, deferred and bounced, and each by the class of the remote reply), refreshed at most every 5 minutes",
        },
      ),
    ),
  },
  { description: 'What the operator observed: conditions and usage, written by the operator' },
);
