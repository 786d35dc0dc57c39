// The relay's configuration contract. The relay validates its config and users files
// with these schemas; the operator imports them to build what it writes, and the CRDs
// are generated from them, so the three cannot drift apart.
import { type Static, Type } from '@sinclair/typebox';

export const DEFAULT_BLOCKED_EXTENSIONS = [
  'pif',
  'bat',
  'exe',
  'scr',
  'com',
  'cmd',
  'vbs',
  'js',
  'jse',
  'wsf',
  'msi',
  'cpl',
  'lnk',
  'hta',
] as const;

export const MIB = 1024 * 1024;

const Port = Type.Integer({ minimum: 0, maximum: 65535, description: 'TCP port; 0 picks a free one' });
const Cidr = Type.String({
  pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$',
  description: 'An IP address or network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8',
});

export const ListenerSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[a-z][a-z0-9-]{0,30}$',
      description: 'Listener name, used in logs and metrics',
    }),
    address: Type.String({ default: '0.0.0.0', description: 'Address to bind' }),
    port: Port,
    tls: Type.Union([Type.Literal('starttls'), Type.Literal('implicit'), Type.Literal('none')], {
      default: 'starttls',
      description: 'starttls offers STARTTLS (port 587), implicit wraps the whole session in TLS (port 465)',
    }),
    proxyProtocol: Type.Boolean({
      default: false,
      description: 'Expect a PROXY protocol v1/v2 header from peers in trustedProxies',
    }),
    trustedProxies: Type.Array(Cidr, {
      default: [],
      description: 'Networks whose connections must start with a PROXY header (load balancers)',
    }),
  },
  { additionalProperties: false },
);

export const LimitsSchema = Type.Object(
  {
    maxMessageBytes: Type.Integer({
      minimum: 1024,
      maximum: 1024 * MIB,
      default: 30 * MIB,
      description: 'Largest message accepted, in bytes (advertised in EHLO SIZE)',
    }),
    maxRecipients: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 30,
      description: 'Recipients accepted per message',
    }),
    recipientOverflow: Type.Union([Type.Literal('reject'), Type.Literal('truncate')], {
      default: 'reject',
      description:
        'reject: each RCPT past the limit gets 452 4.5.3; truncate: accepted but silently dropped (legacy)',
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      default: 1000,
      description: 'Open SMTP connections per relay',
    }),
    maxConnectionsPerIp: Type.Integer({
      minimum: 1,
      default: 50,
      description: 'Open SMTP connections per client IP per relay',
    }),
    idleTimeoutSeconds: Type.Integer({
      minimum: 1,
      maximum: 3600,
      default: 300,
      description: 'Close a connection that sends no command for this long (RFC 5321 4.5.3.2)',
    }),
    sessionTimeoutSeconds: Type.Integer({
      minimum: 10,
      maximum: 86400,
      default: 1800,
      description: 'Close a connection that stays open longer than this, however busy',
    }),
    maxBadCommands: Type.Integer({
      minimum: 1,
      maximum: 100,
      default: 10,
      description: 'Unrecognised or unauthenticated commands before the connection is closed',
    }),
  },
  { additionalProperties: false },
);

export const AuthSchema = Type.Object(
  {
    allowPlaintext: Type.Boolean({
      default: false,
      description: 'Offer AUTH on connections without TLS (never do this on a public network)',
    }),
    methods: Type.Array(Type.Union([Type.Literal('PLAIN'), Type.Literal('LOGIN')]), {
      minItems: 1,
      uniqueItems: true,
      default: ['PLAIN', 'LOGIN'],
      description: 'SASL mechanisms offered',
    }),
    cacheTtlSeconds: Type.Integer({
      minimum: 0,
      maximum: 86400,
      default: 600,
      description: 'How long a successful password check is remembered (0 turns the cache off)',
    }),
  },
  { additionalProperties: false },
);

export const AttachmentsSchema = Type.Object(
  {
    blockedExtensions: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]{1,16}$' }), {
      uniqueItems: true,
      default: [...DEFAULT_BLOCKED_EXTENSIONS],
      description: 'File name extensions refused anywhere in a message (without the dot)',
    }),
  },
  { additionalProperties: false },
);

export const TlsSchema = Type.Object(
  {
    certFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM certificate chain' })),
    keyFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key' })),
  },
  { additionalProperties: false },
);

export const RelayConfigSchema = Type.Object(
  {
    hostname: Type.String({
      minLength: 1,
      maxLength: 253,
      default: 'localhost',
      description: 'Name in the greeting and Received headers',
    }),
    listeners: Type.Array(ListenerSchema, { minItems: 1, description: 'SMTP listeners' }),
    tls: Type.Object(TlsSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Certificate; a self-signed one is generated into stateDir when none is given',
    }),
    auth: Type.Object(AuthSchema.properties, { additionalProperties: false, default: {} }),
    limits: Type.Object(LimitsSchema.properties, { additionalProperties: false, default: {} }),
    attachments: Type.Object(AttachmentsSchema.properties, { additionalProperties: false, default: {} }),
    spoolDir: Type.String({ minLength: 1, description: 'Directory of the durable queue' }),
    stateDir: Type.Optional(
      Type.String({ minLength: 1, description: 'Directory for generated state (self-signed certificate)' }),
    ),
    usersFile: Type.String({ minLength: 1, description: 'Path of the users file (YAML or JSON)' }),
    admin: Type.Object(
      {
        address: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 9587 }),
      },
      { additionalProperties: false, default: {}, description: 'Health and metrics HTTP server' },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, $id: 'RelayConfig' },
);
export type RelayConfig = Static<typeof RelayConfigSchema>;
export type ListenerConfig = Static<typeof ListenerSchema>;
export type LimitsConfig = Static<typeof LimitsSchema>;

/** An address (user@example.com) or a whole domain (@example.com or example.com). */
const SenderPattern = Type.String({
  minLength: 1,
  maxLength: 320,
  pattern: '^[^\\s<>]+$',
  description: 'An address (user@example.com) or a domain (@example.com)',
});

export const UserSchema = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s:]+$' }),
    passwordHash: Type.String({
      pattern: '^\\$(scrypt|argon2id|2a|2b|2y)\\$',
      description: 'scrypt or argon2id PHC string, or bcrypt ($2b$); never a plain password',
    }),
    allowedSenders: Type.Optional(
      Type.Array(SenderPattern, { description: 'MAIL FROM allowed for this user; absent means any' }),
    ),
    suspended: Type.Boolean({ default: false, description: 'A suspended user cannot authenticate' }),
  },
  { additionalProperties: false },
);

export const UsersFileSchema = Type.Object(
  {
    users: Type.Array(UserSchema, { default: [] }),
  },
  { additionalProperties: false, $id: 'UsersFile' },
);
export type UserRecord = Static<typeof UserSchema>;
export type UsersFile = Static<typeof UsersFileSchema>;
