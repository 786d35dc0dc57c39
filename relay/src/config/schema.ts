// The relay's configuration contract. The relay validates its config and users files
// with these schemas; the operator imports them to build what it writes, and the CRDs
// are generated from them, so the three cannot drift apart.
import { type Static, Type } from '@sinclair/typebox';
import { ShapingSchema, SuppressionSchema } from './reputation-schema.ts';

export { ShapingSchema, SuppressionSchema };

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

/**
 * Bounds every numeric field keeps to, so that a value that validates is one the runtime
 * honours. Node's timers hold at most 2^31-1 ms (about 24.8 days): a longer delay fires
 * after 1 ms instead, so a field that becomes a timer stays under it. Counts are capped
 * far above any real use but below where they would stop meaning anything.
 */
export const TIMER_MAX_MS = 2 ** 31 - 1;
/** The largest whole number of seconds a timer can wait. */
export const TIMER_MAX_SECONDS = Math.floor(TIMER_MAX_MS / 1000);
const MAX_COUNT = 100_000_000;
const MAX_CONNECTIONS = 1_000_000;
const DAY = 86400;

/**
 * Bounds on a message's MIME structure, far above what legitimate mail reaches, so that no
 * message costs more than work in proportion to its size. Header bytes: Exchange Online's
 * header limit (256 KB, refused with 552 5.3.4); Postfix bounds a single header at
 * 102,400 (header_size_limit). Header lines: a header at that size in 78-octet lines
 * (RFC 5322's recommendation) is ~3,400 lines. Parts: mailsplit's own default (1,000).
 * Nesting: Postfix's mime_nesting_limit (100). Parameters of a part's Content-Type and
 * Content-Disposition: a charset, a format, a boundary and a 255-character file name
 * percent-encoded as UTF-8 (~2.3 KB) in RFC 2231 continuations of 78 columns need ~50.
 */
export const DEFAULT_MIME_LIMITS = {
  maxHeaderBytes: 256 * 1024,
  maxHeaderLines: 10_000,
  maxMimeParts: 1000,
  maxMimeDepth: 100,
  maxMimeParameters: 256,
} as const;

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
    address: Type.String({
      default: '::',
      description:
        'Address to bind; :: is every interface, IPv4 and IPv6 (0.0.0.0 where the host has no IPv6)',
    }),
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
      description:
        'Largest message accepted, in bytes, counted as stored (line ends made CRLF, Received header included); advertised in EHLO SIZE',
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
    maxHeaderBytes: Type.Integer({
      minimum: 16 * 1024,
      maximum: 1024 * 1024,
      default: DEFAULT_MIME_LIMITS.maxHeaderBytes,
      description:
        "Header bytes of the message and of each MIME part in it; over it: 552 5.3.4 (Exchange Online's header limit; mailsplit's own cap is the maximum)",
    }),
    maxHeaderLines: Type.Integer({
      minimum: 100,
      maximum: 100_000,
      default: DEFAULT_MIME_LIMITS.maxHeaderLines,
      description:
        'Header lines (folded lines each) of the message and of each MIME part in it; over it: 552 5.3.4',
    }),
    maxMimeParts: Type.Integer({
      minimum: 10,
      maximum: 100_000,
      default: DEFAULT_MIME_LIMITS.maxMimeParts,
      description: "MIME parts in a message, itself included; over it: 554 5.6.0 (mailsplit's default)",
    }),
    maxMimeDepth: Type.Integer({
      minimum: 2,
      maximum: 1000,
      default: DEFAULT_MIME_LIMITS.maxMimeDepth,
      description: "Levels of multipart nesting; over it: 554 5.6.0 (Postfix's mime_nesting_limit)",
    }),
    maxMimeParameters: Type.Integer({
      minimum: 16,
      maximum: 10_000,
      default: DEFAULT_MIME_LIMITS.maxMimeParameters,
      description:
        'Parameters in the Content-Type and Content-Disposition fields of the message and of each MIME part; over it: 554 5.6.0',
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      maximum: MAX_CONNECTIONS,
      default: 1000,
      description: 'Open SMTP connections per relay',
    }),
    maxConnectionsPerIp: Type.Integer({
      minimum: 1,
      maximum: MAX_CONNECTIONS,
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
      description:
        'Bad commands (unknown, malformed, out of order, too long) before the connection is closed; also how many commands a client may send before AUTH besides EHLO, STARTTLS and EHLO',
    }),
    handshakeTimeoutSeconds: Type.Integer({
      minimum: 1,
      maximum: 60,
      default: 10,
      description:
        'Close a new connection whose PROXY header or implicit TLS handshake has not completed in this long (it counts against the connection caps meanwhile)',
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
    inspectArchives: Type.Boolean({
      default: true,
      description:
        'Also refuse zip attachments that hold such a file (every local and central directory header is read, wherever it is; nothing is unpacked, a compressed archive inside is not opened)',
    }),
  },
  { additionalProperties: false },
);

/** One rate limit: at most `limit` messages or recipients per sliding window of `windowSeconds`. */
export const RateLimitSchema = Type.Object(
  {
    what: Type.Union([Type.Literal('messages'), Type.Literal('recipients')], {
      description: 'What is counted: accepted messages, or their recipients',
    }),
    limit: Type.Integer({ minimum: 1, maximum: MAX_COUNT, description: 'How many per window' }),
    windowSeconds: Type.Integer({
      minimum: 1,
      maximum: 30 * 86400,
      description: 'Length of the sliding window, e.g. 3600 for per hour, 86400 for per day',
    }),
  },
  { additionalProperties: false },
);
export type RateLimit = Static<typeof RateLimitSchema>;

export const RateLimitsSchema = Type.Object(
  {
    perUser: Type.Array(RateLimitSchema, {
      default: [
        { what: 'messages', limit: 500, windowSeconds: 3600 },
        { what: 'recipients', limit: 2000, windowSeconds: 86400 },
      ],
      description: 'Limits per authenticated user, shared by all relay pods',
    }),
    perIp: Type.Array(RateLimitSchema, {
      default: [],
      description: 'Limits per client IP address, shared by all relay pods',
    }),
    concurrentConnectionsPerIp: Type.Integer({
      minimum: 1,
      maximum: MAX_CONNECTIONS,
      default: 20,
      description: 'Open SMTP connections per client IP across all relay pods',
    }),
  },
  { additionalProperties: false },
);

export const AuthLockoutSchema = Type.Object(
  {
    maxFailuresPerUser: Type.Integer({
      minimum: 1,
      maximum: MAX_COUNT,
      default: 10,
      description: 'Failed AUTH attempts for one username (from any IP) before it is locked',
    }),
    maxFailuresPerIp: Type.Integer({
      minimum: 1,
      maximum: MAX_COUNT,
      default: 20,
      description: 'Failed AUTH attempts from one IP (for any username) before it is locked',
    }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: 86400, default: 900, description: 'Counting window' }),
    cooldownSeconds: Type.Integer({
      minimum: 1,
      maximum: 86400,
      default: 900,
      description: 'How long a locked user or IP is refused',
    }),
  },
  { additionalProperties: false },
);

/** A return-code range such as 127.0.0.2-127.0.0.11, or one address. */
const ReturnCodes = Type.String({
  pattern: '^127\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}(-127\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3})?$',
  description: 'An answer such as 127.0.0.4 or a range 127.0.0.4-127.0.0.7',
});

export const DnsblZoneSchema = Type.Object(
  {
    zone: Type.String({ pattern: '^[A-Za-z0-9.-]+$', description: 'DNS zone, e.g. xbl.spamhaus.org' }),
    listedCodes: Type.Array(ReturnCodes, {
      minItems: 1,
      default: ['127.0.0.2-127.0.0.255'],
      description: 'Answers that mean listed; any other answer is not a listing',
    }),
    action: Type.Union([Type.Literal('reject'), Type.Literal('tag')], {
      default: 'reject',
      description: 'reject refuses the client; tag only logs and counts it',
    }),
    message: Type.String({
      default: 'Client host [{ip}] is listed in {zone}',
      description: 'Reply text; {ip}, {zone} and {url} are filled in',
    }),
    lookupUrl: Type.Optional(
      Type.String({ description: 'Where the client can look the IP up; {ip} is filled in' }),
    ),
  },
  { additionalProperties: false },
);
export type DnsblZone = Static<typeof DnsblZoneSchema>;

export const DEFAULT_DNSBL_ZONES: DnsblZone[] = [
  {
    zone: 'xbl.spamhaus.org',
    listedCodes: ['127.0.0.4-127.0.0.7'],
    action: 'reject',
    message: 'Client host [{ip}] is listed in the Spamhaus XBL; see {url}',
    lookupUrl: 'https://check.spamhaus.org/listed/?searchterm={ip}',
  },
];

export const DnsblSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: 'Check client IPs against the zones' }),
    checkAt: Type.Union([Type.Literal('connect'), Type.Literal('auth')], {
      default: 'connect',
      description: 'connect checks every client before the greeting; auth checks after a successful AUTH',
    }),
    zones: Type.Array(DnsblZoneSchema, {
      default: DEFAULT_DNSBL_ZONES,
      description: 'The blocklists to query, in order (default Spamhaus XBL)',
    }),
    resolvers: Type.Array(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(:[0-9]{1,5})?$' }), {
      default: [],
      description: 'DNS servers (ip, ip:port or [ipv6]:port); empty uses the system resolver',
    }),
    timeoutMs: Type.Integer({ minimum: 50, maximum: 30_000, default: 2000, description: 'Per query' }),
    onError: Type.Union([Type.Literal('open'), Type.Literal('tempfail')], {
      default: 'open',
      description: 'A zone that times out or fails: open lets the client on; tempfail answers 451 4.7.1',
    }),
    minTtlSeconds: Type.Integer({
      minimum: 0,
      maximum: 7 * DAY,
      default: 60,
      description: 'Shortest time an answer is cached',
    }),
    maxTtlSeconds: Type.Integer({
      minimum: 1,
      maximum: 7 * DAY,
      default: 3600,
      description: 'Longest time an answer is cached',
    }),
    errorBackoffSeconds: Type.Integer({
      minimum: 1,
      maximum: DAY,
      default: 600,
      description: 'How long a zone is disabled after it answered with an error code',
    }),
  },
  { additionalProperties: false },
);

/** Redis's SELECT index is a C int; which ones exist is the server's `databases` setting (16 by default). */
export const RedisDbSchema = Type.Integer({
  minimum: 0,
  maximum: 2 ** 31 - 1,
  default: 0,
  description: 'Database index (SELECT); the server has 16 (0-15) unless configured otherwise',
});

export const RedisSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('standalone'), Type.Literal('sentinel'), Type.Literal('cluster')], {
      default: 'standalone',
      description:
        'standalone: one server; sentinel: the master a sentinel group names; cluster: Redis Cluster',
    }),
    nodes: Type.Array(Type.String({ pattern: '^[^\\s:]+:[0-9]{1,5}$', description: 'host:port' }), {
      minItems: 1,
      description: 'host:port of the server, the sentinels, or the cluster seed nodes',
    }),
    sentinelName: Type.Optional(Type.String({ minLength: 1, description: 'Master name (sentinel mode)' })),
    username: Type.Optional(
      Type.String({ minLength: 1, description: 'ACL user name (Redis 6 AUTH); none: the default user' }),
    ),
    passwordFile: Type.Optional(Type.String({ minLength: 1, description: 'File holding the password' })),
    tls: Type.Boolean({ default: false, description: 'Connect with TLS' }),
    db: RedisDbSchema,
    commandTimeoutMs: Type.Integer({
      minimum: 10,
      maximum: 60_000,
      default: 500,
      description:
        'A Redis command that takes longer fails (and the relay falls back as onSharedStateDown says)',
    }),
  },
  { additionalProperties: false },
);

export const StateSchema = Type.Object(
  {
    backend: Type.Union([Type.Literal('memory'), Type.Literal('redis')], {
      default: 'memory',
      description: 'memory: this process only; redis: shared by every relay pod',
    }),
    redis: Type.Optional(RedisSchema),
    namespace: Type.String({
      pattern: '^[A-Za-z0-9_.:-]{1,100}$',
      default: 'default',
      description: 'Key prefix; the operator sets it to the RelayPolicy namespace/name',
    }),
    onSharedStateDown: Type.Union([Type.Literal('local'), Type.Literal('tempfail')], {
      default: 'local',
      description:
        'While Redis is unreachable: local keeps serving with per-pod state and limits; tempfail answers 4xx to checks that need it',
    }),
  },
  { additionalProperties: false },
);

export const UsageSchema = Type.Object(
  {
    hourRetentionHours: Type.Integer({
      minimum: 25,
      maximum: 24 * 31,
      default: 72,
      description:
        'How long hourly usage per user is kept (at least 25: abuse detection compares the last hour with the 24 before it)',
    }),
    dayRetentionDays: Type.Integer({
      minimum: 1,
      maximum: 400,
      default: 35,
      description: 'How long daily usage per user is kept',
    }),
    flushIntervalSeconds: Type.Integer({
      minimum: 1,
      maximum: 60,
      default: 5,
      description:
        'Each relay adds up usage in memory and writes it to the state store this often (one round trip)',
    }),
  },
  { additionalProperties: false },
);

export const AbuseSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Evaluate per-user usage for signs of a compromised account',
    }),
    intervalSeconds: Type.Integer({
      minimum: 10,
      maximum: 3600,
      default: 60,
      description: 'How often usage is evaluated (by one relay of the policy at a time)',
    }),
    volumeFactor: Type.Number({
      minimum: 1,
      maximum: 1_000_000,
      default: 10,
      description:
        'Flag a user whose messages in the last hour exceed this many times the median of their 24 hours before',
    }),
    volumeFloor: Type.Integer({
      minimum: 1,
      maximum: MAX_COUNT,
      default: 100,
      description: '... and are at least this many (a quiet account may send a few dozen without a flag)',
    }),
    maxClientIps: Type.Integer({
      minimum: 1,
      maximum: MAX_CONNECTIONS,
      default: 10,
      description:
        'Flag a user who authenticated from more distinct client IPs than this within the current hour',
    }),
    rejectRatio: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.5,
      description:
        'Flag a user when more than this share of their transactions in the last hour was refused ...',
    }),
    minAttempts: Type.Integer({
      minimum: 1,
      maximum: MAX_COUNT,
      default: 20,
      description: '... out of at least this many (accepted plus refused)',
    }),
    invalidRecipientRatio: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.1,
      description:
        'Flag a user when more than this share of their recipients in the last hour bounced as invalid (at least minAttempts delivered or bounced)',
    }),
    spamBlockRatio: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.1,
      description:
        'Flag a user when more than this share of their recipients in the last hour bounced because the receiver blocks the mail as spam',
    }),
    shareJumpFactor: Type.Number({
      minimum: 0,
      maximum: 100,
      default: 2,
      description:
        "A bounce share over invalidRecipientRatio or spamBlockRatio flags the user only if it is also more than this many times the user's own share over the 24 hours before (a list that always bounces a little is not a compromise; a new user has no history and is judged by the ratio alone); 0: the ratio alone",
    }),
    flagTtlSeconds: Type.Integer({
      minimum: 60,
      maximum: 86400,
      default: 3600,
      description: 'A flag is kept (and not raised again) this long',
    }),
    autoSuspend: Type.Boolean({
      default: false,
      description: 'Refuse a flagged user on every relay, as a suspended one, for suspendSeconds',
    }),
    suspendSeconds: Type.Integer({
      minimum: 60,
      maximum: 30 * 86400,
      default: 86400,
      description: 'How long an automatic suspension lasts (DELETE /abuse/<user> lifts it earlier)',
    }),
  },
  { additionalProperties: false },
);

const IpAddress = Type.String({
  pattern: '^[0-9a-fA-F:.]{2,45}$',
  description: 'An IPv4 or IPv6 address',
});

export const OwnIpWatchSchema = Type.Object(
  {
    ips: Type.Array(IpAddress, {
      maxItems: 16,
      uniqueItems: true,
      default: [],
      description:
        'Egress IP addresses of the relays (the addresses receivers see); empty turns the watch off',
    }),
    zones: Type.Optional(
      Type.Array(DnsblZoneSchema, {
        description: 'Zones to check them in; the dnsbl zones when absent',
      }),
    ),
    intervalSeconds: Type.Integer({
      minimum: 30,
      maximum: 86400,
      default: 900,
      description: 'How often every address is looked up (no cache: each check asks DNS)',
    }),
  },
  { additionalProperties: false },
);

const HostPort = Type.Integer({ minimum: 1, maximum: 65535 });

export const RetrySchema = Type.Object(
  {
    minBackoffSeconds: Type.Integer({
      minimum: 1,
      maximum: DAY,
      default: 300,
      description: 'Wait before the first retry; doubles after each attempt (Postfix minimal_backoff_time)',
    }),
    maxBackoffSeconds: Type.Integer({
      minimum: 1,
      maximum: 7 * DAY,
      default: 3600,
      description: 'Longest wait between attempts (Postfix maximal_backoff_time)',
    }),
    queueLifetimeSeconds: Type.Integer({
      minimum: 60,
      maximum: 30 * DAY,
      default: 5 * 86400,
      description: 'A recipient still deferred after this long is bounced (Postfix maximal_queue_lifetime)',
    }),
    delayWarningSeconds: Type.Integer({
      minimum: 0,
      maximum: 30 * DAY,
      default: 4 * 3600,
      description: 'Send the sender one delay notice after this long; 0 sends none',
    }),
  },
  { additionalProperties: false },
);

export const SmarthostSchema = Type.Object(
  {
    host: Type.String({ minLength: 1, description: 'Smarthost name or address' }),
    fallbackHosts: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        maxItems: 8,
        description:
          'Tried in order when the host cannot be reached or refuses the session (same port, TLS and credentials)',
      }),
    ),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 587, description: 'Port of the smarthost' }),
    tls: Type.Union([Type.Literal('starttls'), Type.Literal('implicit'), Type.Literal('none')], {
      default: 'starttls',
      description: 'starttls upgrades (required), implicit connects with TLS, none never encrypts',
    }),
    username: Type.Optional(Type.String({ minLength: 1 })),
    passwordFile: Type.Optional(Type.String({ minLength: 1, description: 'File holding the AUTH password' })),
    rejectUnauthorized: Type.Boolean({ default: true, description: "Verify the smarthost's certificate" }),
  },
  { additionalProperties: false },
);

export const DeliverySchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('direct'), Type.Literal('smarthost')], {
      default: 'direct',
      description: "direct looks up each domain's MX; smarthost hands every message to one relay",
    }),
    smarthost: Type.Optional(SmarthostSchema),
    port: Type.Integer({
      minimum: 1,
      maximum: 65535,
      default: 25,
      description: 'Port of MX hosts (direct mode)',
    }),
    resolvers: Type.Array(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(:[0-9]{1,5})?$' }), {
      default: [],
      description: 'DNS servers for MX lookups (ip, ip:port); empty uses the system resolver',
    }),
    egressAddresses: Type.Array(IpAddress, {
      default: [],
      maxItems: 64,
      uniqueItems: true,
      description:
        "Local addresses direct delivery binds its connections to (IPv4 ones for IPv4 MX addresses, IPv6 for IPv6), taken in turn; shaping's limits hold per destination group and egress address, shared by all relays (which must have the same addresses, e.g. on a host network). Empty: the system picks the source address, and the limits hold per group",
    }),
    allowLocalAddresses: Type.Boolean({
      default: false,
      description:
        'Deliver to any address (tests, labs). Off: only globally routable unicast addresses; an MX host on loopback, private, link-local, CGNAT or other special-purpose addresses is skipped, and mail whose every MX address (or address literal) is one bounces with 5.4.4',
    }),
    allowedNetworks: Type.Array(Cidr, {
      default: [],
      description:
        'Addresses and CIDR networks direct delivery may connect to although they are not globally routable, e.g. an internal MX (the smarthost is always allowed)',
    }),
    requireTls: Type.Boolean({
      default: false,
      description: 'Defer instead of sending in clear text when an MX does not offer STARTTLS',
    }),
    heloName: Type.Optional(Type.String({ minLength: 1, description: 'Name in EHLO; default hostname' })),
    connectTimeoutSeconds: Type.Integer({
      minimum: 1,
      maximum: 600,
      default: 30,
      description: 'Connecting to an MX or smarthost (and each of its replies) may take this long',
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 100,
      description: 'Outgoing SMTP connections per relay',
    }),
    maxConnectionsPerDomain: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 10,
      description:
        'Outgoing SMTP connections per destination domain per relay; in smarthost mode, to the smarthost',
    }),
    messagesPerConnection: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 100,
      description: 'Messages sent over one connection before it is closed',
    }),
    retry: Type.Object(RetrySchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'When a deferred message is tried again',
    }),
    mtaSts: Type.Object(
      {
        enabled: Type.Boolean({
          default: true,
          description:
            "Direct delivery honours the destination's MTA-STS policy (RFC 8461): enforce delivers only to matching MX hosts over TLS with a valid certificate, else defers; testing delivers and logs",
        }),
      },
      { additionalProperties: false, default: {}, description: 'MTA-STS for direct delivery' },
    ),
    dane: Type.Object(
      {
        enabled: Type.Boolean({
          default: false,
          description:
            "Direct delivery honours MX hosts' DNSSEC-validated TLSA records (DANE, RFC 7672): TLS whose certificate matches one, else defer; DANE wins over MTA-STS",
        }),
        resolver: Type.Optional(
          Type.String({
            pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(:[0-9]{1,5})?$',
            description:
              'The DNSSEC-validating resolver whose AD bit is trusted (ip, ip:port or [ipv6]:port); the first of resolvers when absent',
          }),
        ),
      },
      { additionalProperties: false, default: {}, description: 'DANE for direct delivery' },
    ),
  },
  { additionalProperties: false },
);

/** How long a stopping relay keeps delivering (a timer: at most a day). */
export const DrainDeadlineSchema = Type.Integer({
  minimum: 0,
  maximum: DAY,
  default: 60,
  description: 'On shutdown, keep delivering this long before handing the queue on (or leaving it)',
});

export const ShutdownDelaySchema = Type.Integer({
  minimum: 0,
  maximum: 600,
  default: 0,
  description:
    'On SIGTERM, report not ready (/readyz 503) and keep accepting connections this long before the listeners close, so endpoints and load balancers stop sending first',
});

export const SessionGraceSchema = Type.Integer({
  minimum: 0,
  maximum: 3600,
  default: 25,
  description: 'Once the listeners close, open SMTP sessions get this long to finish',
});

/** RFC 1918 and RFC 4193 (unique local IPv6): where pod networks usually are. */
export const PRIVATE_NETWORKS = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'] as const;

export const DrainSchema = Type.Object(
  {
    shutdownDelaySeconds: ShutdownDelaySchema,
    sessionGraceSeconds: SessionGraceSchema,
    deadlineSeconds: DrainDeadlineSchema,
    handoff: Type.Optional(
      Type.Object(
        {
          host: Type.String({ minLength: 1, description: 'The relay Service to hand queued mail to' }),
          port: HostPort,
          tls: Type.Union([Type.Literal('starttls'), Type.Literal('implicit'), Type.Literal('none')], {
            default: 'starttls',
          }),
          username: Type.String({ minLength: 1, description: 'Internal credential for the handoff' }),
          passwordFile: Type.String({ minLength: 1 }),
          fromNetworks: Type.Array(Cidr, {
            minItems: 1,
            default: [...PRIVATE_NETWORKS],
            description:
              'Networks (the pod network) from which AUTH as the handoff username is accepted; from anywhere else it fails like a wrong password (535 5.7.8)',
          }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const TlsSchema = Type.Object(
  {
    certFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM certificate chain' })),
    keyFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key' })),
    trustedCaFile: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'PEM CA certificates trusted besides the system ones when delivery verifies MX certificates, MTA-STS policy hosts and the smarthost (a private PKI); re-read when the file changes',
      }),
    ),
  },
  { additionalProperties: false },
);

const DkimKeySchema = Type.Object(
  {
    domain: Type.String({
      minLength: 1,
      maxLength: 253,
      pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$',
      description: 'd= of the signature: signs mail whose header From is this domain or a subdomain of it',
    }),
    selector: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: '^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$',
      description: 's= of the signature: the public key is published at <selector>._domainkey.<domain>',
    }),
    algorithm: Type.Union([Type.Literal('rsa-sha256'), Type.Literal('ed25519-sha256')], {
      default: 'rsa-sha256',
      description: 'rsa-sha256 (an RSA key of at least 1024 bits; 2048 advised) or ed25519-sha256 (RFC 8463)',
    }),
    privateKeyFile: Type.String({ minLength: 1, description: 'PEM private key (PKCS#8 or PKCS#1)' }),
  },
  { additionalProperties: false },
);
export type DkimKeyConfig = Static<typeof DkimKeySchema>;

/** DKIM signing of accepted mail (dkim/). Keys are read and checked at start and at every reload. */
export const DkimSchema = Type.Object(
  {
    keys: Type.Array(DkimKeySchema, {
      default: [],
      description:
        'Signing keys by domain; a domain may have one rsa-sha256 and one ed25519-sha256 key (both sign)',
    }),
    defaultSigner: Type.Optional(
      Type.Object(DkimKeySchema.properties, {
        additionalProperties: false,
        description: "Signs mail whose From domain has no key (the provider's own domain)",
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * Which header From (and Sender) addresses an authenticated user may use (policy/).
 * A SendingDomain of the operator becomes one entry of `domains`.
 */
export const SendersSchema = Type.Object(
  {
    headerFrom: Type.Union([Type.Literal('off'), Type.Literal('enforce')], {
      default: 'off',
      description:
        "enforce: every From and Sender address must be one of the user's allowedSenders or in a domain below that admits the user, else the message is refused",
    }),
    domains: Type.Array(
      Type.Object(
        {
          domain: Type.String({
            minLength: 1,
            maxLength: 253,
            pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$',
            description:
              'A sending domain: addresses in it (not in its subdomains) may be used by the users below',
          }),
          users: Type.Optional(
            Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
              maxItems: 100_000,
              description: 'Usernames that may send as this domain; absent means every user',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      { default: [], maxItems: 100_000, description: 'Sending domains and who may send as them' },
    ),
  },
  { additionalProperties: false },
);
export type SendersConfig = Static<typeof SendersSchema>;

/**
 * DMARC pre-check at the end of DATA (dmarc/): mail whose header From domain publishes
 * p=quarantine or p=reject, and which neither the relay's DKIM signature nor SPF can align,
 * would be refused or junked by the receiver; the relay says so while the client listens.
 */
export const DmarcPrecheckSchema = Type.Object(
  {
    action: Type.Union([Type.Literal('off'), Type.Literal('warn'), Type.Literal('reject')], {
      default: 'off',
      description:
        'reject: refuse such mail with 550 5.7.1 saying what to publish; warn: accept it, log and count it; off: no lookups',
    }),
    egressIps: Type.Optional(
      Type.Array(IpAddress, {
        maxItems: 16,
        uniqueItems: true,
        description:
          "Addresses receivers see the relay's mail come from, for the SPF check of the MAIL FROM domain; ownIpWatch.ips when absent; with none, only DKIM can align",
      }),
    ),
    resolvers: Type.Array(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(:[0-9]{1,5})?$' }), {
      default: [],
      description: 'DNS servers (ip, ip:port or [ipv6]:port); empty uses the system resolver',
    }),
    timeoutMs: Type.Integer({
      minimum: 50,
      maximum: 30_000,
      default: 2000,
      description:
        'Per query; a lookup that times out or fails never refuses mail: the message is accepted and counted as dns_error',
    }),
    cacheSeconds: Type.Integer({
      minimum: 0,
      maximum: 86_400,
      default: 300,
      description:
        'How long DMARC and SPF answers (and their absence) are kept in the shared state, so one query serves every pod; 0 keeps nothing',
    }),
  },
  { additionalProperties: false },
);
export type DmarcPrecheckConfig = Static<typeof DmarcPrecheckSchema>;

/** What the relay does to the header section of submitted mail (smtp/missing-headers.ts). */
export const HeadersSchema = Type.Object(
  {
    keepBcc: Type.Boolean({
      default: false,
      description:
        'Keep Bcc and Resent-Bcc header fields in delivered mail; by default they are removed before the message is queued (as Postfix does), so no recipient sees the hidden ones',
    }),
  },
  { additionalProperties: false },
);

/** Free space the relay keeps on its spool's filesystem (spool/free-space.ts). */
export const SpoolReserveSchema = Type.Integer({
  minimum: 0,
  maximum: 1_048_576,
  description:
    "Free space (MiB) kept on the spool's filesystem: below it (plus a declared SIZE) MAIL FROM gets 452 4.3.1 and the relay reports not ready; default 1.5 × limits.maxMessageBytes",
});

/**
 * Where mail to the domainless <postmaster> goes. RFC 5321 4.5.1 has every SMTP server
 * accept RCPT TO:<postmaster> without a domain, for its own operator; a relay has no
 * mailboxes, so it passes such mail on to this address. ASCII only (no space, <, > or a
 * second @), so that clients without SMTPUTF8 can reach it; the pattern is one that
 * Kubernetes' validation (Go regular expressions) reads the same way.
 */
export const PostmasterSchema = Type.String({
  minLength: 3,
  maxLength: 254,
  pattern: '^[!-;=?A-~]+@[!-;=?A-~]+$',
  description:
    'Where mail to the domainless <postmaster> (RFC 5321 4.5.1) goes; default postmaster@<hostname>',
});

export const RelayConfigSchema = Type.Object(
  {
    hostname: Type.String({
      minLength: 1,
      maxLength: 253,
      default: 'localhost',
      description: 'Name in the greeting and Received headers',
    }),
    postmaster: Type.Optional(PostmasterSchema),
    listeners: Type.Array(ListenerSchema, { minItems: 1, description: 'SMTP listeners' }),
    tls: Type.Object(TlsSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Certificate; a self-signed one is generated into stateDir when none is given',
    }),
    auth: Type.Object(AuthSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'SMTP AUTH',
    }),
    limits: Type.Object(LimitsSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Per-message and per-connection limits',
    }),
    attachments: Type.Object(AttachmentsSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Blocked attachment types',
    }),
    headers: Type.Object(HeadersSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'What the relay does to the header section of submitted mail',
    }),
    dkim: Type.Object(DkimSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'DKIM signing of accepted mail, by the domain of the header From',
    }),
    senders: Type.Object(SendersSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Which header From and Sender addresses each user may use',
    }),
    dmarcPrecheck: Type.Object(DmarcPrecheckSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'DMARC pre-check of the header From domain at the end of DATA',
    }),
    rateLimits: Type.Object(RateLimitsSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Rate limits, shared by all relay pods through the state store',
    }),
    authLockout: Type.Object(AuthLockoutSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Lockout after repeated AUTH failures, shared by all relay pods',
    }),
    dnsbl: Type.Object(DnsblSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'DNS blocklist checks of the client IP',
    }),
    delivery: Type.Object(DeliverySchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Delivery from the queue: direct to MX or through a smarthost',
    }),
    drain: Type.Object(DrainSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'What a stopping relay does with its queue',
    }),
    spool: Type.Object(
      {
        groupCommit: Type.Boolean({
          default: true,
          description: 'Concurrent messages share directory fsyncs (durability is the same either way)',
        }),
        reserveMegabytes: Type.Optional(SpoolReserveSchema),
      },
      { additionalProperties: false, default: {}, description: 'Spool tuning' },
    ),
    state: Type.Object(StateSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Where shared state (rate counters, lockouts, DNSBL cache) lives',
    }),
    usage: Type.Object(UsageSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Usage per user, per hour and per day, kept in the state store',
    }),
    abuse: Type.Object(AbuseSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Detection of compromised accounts from their usage',
    }),
    ownIpWatch: Type.Object(OwnIpWatchSchema.properties, {
      additionalProperties: false,
      default: {},
      description: "Periodic DNSBL check of the relays' own egress addresses",
    }),
    shaping: Type.Object(ShapingSchema.properties, {
      additionalProperties: false,
      default: {},
      description:
        'Limits per destination group (Google, Microsoft, …) shared by all relays, slowed down by throttling replies',
    }),
    suppression: Type.Object(SuppressionSchema.properties, {
      additionalProperties: false,
      default: {},
      description: 'Recipients that bounced (as invalid, by default) are refused at RCPT for a while',
    }),
    workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
      default: 1,
      description:
        'Processes that share the SMTP ports (SO_REUSEPORT) and the spool, one spool directory w<i> each; auto is os.availableParallelism(), which follows the cgroup CPU limit on Node 24. 1 runs the relay in one process',
    }),
    spoolDir: Type.String({ minLength: 1, description: 'Directory of the durable queue' }),
    stateDir: Type.Optional(
      Type.String({ minLength: 1, description: 'Directory for generated state (self-signed certificate)' }),
    ),
    usersFile: Type.String({
      minLength: 1,
      description:
        'Path of the users file (YAML or JSON), or of a directory whose .json and .yaml files are merged into one list (shards)',
    }),
    admin: Type.Object(
      {
        address: Type.String({
          default: '::',
          description:
            'Address to bind; :: is every interface, IPv4 and IPv6 (0.0.0.0 where the host has no IPv6)',
        }),
        port: Type.Integer({
          minimum: 0,
          maximum: 65535,
          default: 9587,
          description: 'Port of the admin server',
        }),
        tokenFile: Type.Optional(
          Type.String({
            minLength: 1,
            description: 'Bearer token for the queue, usage and abuse APIs; without it those APIs are off',
          }),
        ),
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
      { additionalProperties: false, default: {}, description: 'Logging' },
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
    rateLimits: Type.Optional(
      Type.Array(RateLimitSchema, { description: "Replaces the policy's perUser limits for this user" }),
    ),
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

/**
 * Config fields that shape sockets, directories and connections: the relay applies a
 * change to them only after a restart (everything else is reloaded in place). The
 * operator hashes these into the pod template, so such a change rolls the pods.
 */
export const RESTART_FIELDS = [
  'listeners',
  'admin',
  'spoolDir',
  'stateDir',
  'usersFile',
  'state',
  'workers',
] as const;
