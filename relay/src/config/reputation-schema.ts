// The config sections that protect the relay's reputation: suppression of recipients
// that bounced, and shaping of delivery per destination group.
import { type Static, Type } from '@sinclair/typebox';
import { REPLY_CLASSES } from '../wire/reply-classes.ts';

const ReplyClass = Type.Union(
  REPLY_CLASSES.map((c) => Type.Literal(c)),
  { description: 'A reply class (docs/relay.md#reply-classes)' },
);

export const SuppressionSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Refuse new mail (550 5.1.1 at RCPT) to recipients that bounced with one of classes',
    }),
    classes: Type.Array(ReplyClass, {
      default: ['invalid-recipient'],
      maxItems: 32,
      description: 'The bounce classes that suppress a recipient',
    }),
    ttlSeconds: Type.Integer({
      minimum: 60,
      maximum: 365 * 86400,
      default: 30 * 86400,
      description: 'How long a recipient stays suppressed (DELETE /suppressions/<address> lifts it earlier)',
    }),
  },
  { additionalProperties: false },
);

const Limits = {
  connections: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    description: 'Open connections to the group from all relays of the policy together',
  }),
  connectionsPerMinute: Type.Integer({
    minimum: 1,
    maximum: 100_000,
    description: 'New connections to the group per minute from all relays together',
  }),
  messagesPerConnection: Type.Integer({
    minimum: 1,
    maximum: 100_000,
    description: 'Messages sent over one connection before it is closed',
  }),
  messagesPerSecond: Type.Number({
    exclusiveMinimum: 0,
    maximum: 100_000,
    description: 'Messages per second to the group from all relays together (0.5: one every two seconds)',
  }),
};

export const ShapingGroupSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,40}$',
      description: 'The group, as metrics label it',
    }),
    mxSuffixes: Type.Array(Type.String({ pattern: '^\\.?[A-Za-z0-9.-]{1,253}$' }), {
      minItems: 1,
      maxItems: 32,
      description:
        "Domains whose first MX host ends in one of these belong to the group (e.g. '.google.com')",
    }),
    connections: Type.Optional(Limits.connections),
    connectionsPerMinute: Type.Optional(Limits.connectionsPerMinute),
    messagesPerConnection: Type.Optional(Limits.messagesPerConnection),
    messagesPerSecond: Type.Optional(Limits.messagesPerSecond),
  },
  { additionalProperties: false },
);

export const ShapingSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Hold the limits per destination group in the shared state, for all relays together',
    }),
    default: Type.Object(
      {
        connections: Type.Integer({ ...Limits.connections, default: 10 }),
        connectionsPerMinute: Type.Integer({ ...Limits.connectionsPerMinute, default: 100 }),
        messagesPerConnection: Type.Integer({ ...Limits.messagesPerConnection, default: 100 }),
        messagesPerSecond: Type.Number({ ...Limits.messagesPerSecond, default: 100 }),
      },
      {
        additionalProperties: false,
        default: {},
        description: "Limits of every group that sets none of its own, and of the 'default' group",
      },
    ),
    groups: Type.Optional(
      Type.Array(ShapingGroupSchema, {
        maxItems: 64,
        description:
          "Destination groups, first match wins; absent: Google, Microsoft, Yahoo and Apple as KumoMTA's shaping.toml ships them",
      }),
    ),
    maxWaitSeconds: Type.Integer({
      minimum: 0,
      maximum: 600,
      default: 30,
      description:
        'A delivery waits this long for a connection or a message slot of its group, then is retried later',
    }),
    slowdownSeconds: Type.Integer({
      minimum: 1,
      maximum: 86_400,
      default: 5400,
      description:
        'A throttling reply slows its group down on every relay this long (1 connection, 1 message a minute)',
    }),
  },
  { additionalProperties: false },
);

export type ShapingConfig = Static<typeof ShapingSchema>;
