// Sends queued mail onward over SMTP: straight to each domain's MX hosts (opportunistic
// STARTTLS, local addresses refused unless allowed) or through one smarthost (its TLS mode,
// AUTH). Connections are pooled per destination. Every outcome is a per-recipient result:
// a reply the remote server gave, or a local reason with an RFC 3463 status.
import { getServers } from 'node:dns';
import { readFileSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isIPv6, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
import type { RelayConfig } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';
import { DestinationPolicy } from '../net/destination-policy.ts';
import type { Logger } from '../observability/logger.ts';
import { SMALL_WRITE_BYTES } from '../spool/files.ts';
import { withHeaderPrefix } from '../spool/message-file.ts';
import type { StateStore } from '../state/store.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { ConnectionPool } from './connection-pool.ts';
import {
  errorText,
  type Failure,
  fail,
  local,
  mxConnectFailure,
  refusedAtConnect,
  type Sent,
  SHUTTING_DOWN,
  setupFailure,
  transactionResults,
} from './delivery-results.ts';
import {
  type MtaStsOutcome,
  MtaStsPolicies,
  type MtaStsPolicy,
  mxMatches,
  NO_POLICY,
  readCaFile,
  testingProblem,
} from './mta-sts.ts';

export type { MtaStsOutcome } from './mta-sts.ts';

import { DaneResolver, verifyDane } from './dane.ts';
import { type MxHost, MxResolver } from './mx-resolver.ts';
import { MAX_MX_HOSTS, type MxTarget, planTargets } from './mx-targets.ts';
import { OutboundSession } from './outbound-session.ts';
import { RecycledFileReader } from './recycled-reader.ts';
import { classifyResult } from './reply-class.ts';
import type { GroupLimits, Shaper } from './shaping.ts';

export { parseReply } from './delivery-results.ts';

import type { DeliveryJob, RecipientResult, Transport } from './types.ts';

type DeliveryConfig = RelayConfig['delivery'];
type SmarthostConfig = NonNullable<DeliveryConfig['smarthost']>;

/** What mx-connect (no type declarations of its own) is called with and gives back. */
interface MxConnection {
  socket: Socket;
  hostname: string;
  host: string;
}
type MxConnect = (options: {
  target: string;
  /** With their addresses: mx-connect then looks nothing up itself. */
  mx: MxTarget[];
  port: number;
  maxConnectTime: number;
  ignoreMXHosts: string[];
  dnsOptions: { resolve: MxResolver['callbackResolve'] };
  /** Called with the address about to be connected to; an error ends the whole attempt. */
  connectHook?: (delivery: unknown, target: { host: string }, done: (err?: Error) => void) => void;
  connectError?: (err: Error, delivery: unknown, target: { host?: string }) => void;
}) => Promise<MxConnection>;
const mxConnect = createRequire(import.meta.url)('mx-connect') as MxConnect;

/** Inactivity allowed mid-transaction (RFC 5321 4.5.3.2 asks for minutes, not seconds). */
const SOCKET_TIMEOUT_MS = 5 * 60_000;
const DNS_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 5_000;
// Spool reads of large messages for delivery: a few large reads rather than 16 per megabyte.
const READ_CHUNK_BYTES = 256 * 1024;
/** One being sent, one held by the encoder for the end of data, one being read. */
const READ_BUFFERS = 3;
/** New connections tried after reused ones that turned out closed, per job. */
const STALE_RETRIES = 2;

/** A transaction that got no reply at all: the connection failed before the server answered. */
function unanswered(sent: Sent | undefined): boolean {
  return (
    sent?.error !== undefined &&
    sent.error.response === undefined &&
    sent.accepted.length === 0 &&
    sent.rejected.length === 0
  );
}

/** A message held in memory as one buffer, its DKIM signatures (latin1 header lines) in front. */
function inOneBuffer(headerPrefix: string | undefined, pieces: readonly Buffer[]): Buffer {
  return Buffer.concat(headerPrefix ? [Buffer.from(headerPrefix, 'latin1'), ...pieces] : pieces);
}

/**
 * An internationalised address, or a header with UTF-8 in a message whose client declared
 * SMTPUTF8, may only go to a server that offers SMTPUTF8 (RFC 6531 3.2, 3.4); the session
 * asks for it where offered. Where it is not, the message cannot be delivered as it is:
 * Postfix bounces it the same way.
 */
function needsSmtpUtf8(job: DeliveryJob): boolean {
  return (
    job.smtpUtf8 === 'needed' || isInternationalised(job.sender) || job.recipients.some(isInternationalised)
  );
}

function smtpUtf8NotOffered(remoteHost: string): Failure {
  const failure = local(
    'bounced',
    '5.6.7',
    `${remoteHost} does not offer SMTPUTF8, which the message's internationalised addresses or header need`,
    'smtputf8_not_offered',
  );
  failure.remoteHost = remoteHost;
  return failure;
}

export interface SmtpTransportOptions {
  mode: 'direct' | 'smarthost';
  config: DeliveryConfig;
  hostname: string;
  /** The smarthost AUTH password (read from smarthost.passwordFile by the caller). */
  smarthostPassword?: string;
  logger: Logger;
  /** How long an unused connection is kept for the next job to its destination. */
  idleTimeoutMs?: number;
  /** PEM CA certificates trusted besides the system ones for MX and policy hosts (tls.trustedCaFile). */
  caFile?: string | undefined;
  /** The shared state, where MTA-STS policies are kept for every pod. */
  sharedCache?: Pick<StateStore, 'getCache' | 'setCache'> | undefined;
  /** Port of MTA-STS policy hosts: 443 (RFC 8461) unless a test serves elsewhere. */
  mtaStsPort?: number;
  /** Told each MTA-STS outcome of a connection (metrics). */
  /** Each MTA-STS outcome, with the destination group of the domain (shaping's groups; 'default' without). */
  onMtaSts?: (outcome: MtaStsOutcome, group: string) => void;
  /** Told each DANE outcome of a connection to an MX host with validated TLSA records. */
  onDane?: (result: 'verified' | 'failed', group: string) => void;
  /** Limits per destination group shared by all relays (direct mode only). */
  shaper?: Shaper;
}

interface Route {
  key: string;
  /** The destination group's limits (direct mode with shaping). */
  limits?: GroupLimits;
  /** Whether an idle pooled connection can carry this job. */
  fits(session: OutboundSession): boolean;
  /** A new connection, from the egress address given (absent: the system's choice). */
  connect(log: Logger, egress?: string): Promise<OutboundSession | Failure>;
}

export class SmtpTransport implements Transport {
  readonly #mode: 'direct' | 'smarthost';
  readonly #config: DeliveryConfig;
  readonly #smarthost: SmarthostConfig | undefined;
  readonly #auth: { user: string; pass: string } | undefined;
  readonly #helo: string;
  readonly #log: Logger;
  readonly #resolver: MxResolver;
  readonly #destinations: DestinationPolicy;
  readonly #pool: ConnectionPool<OutboundSession>;
  readonly #mtaSts: MtaStsPolicies | undefined;
  /** CAs that verify MX certificates (undefined: the system's). */
  readonly #mxCa: string[] | undefined;
  readonly #onMtaSts: ((outcome: MtaStsOutcome, group: string) => void) | undefined;
  readonly #dane: DaneResolver | undefined;
  readonly #onDane: ((result: 'verified' | 'failed', group: string) => void) | undefined;
  readonly #shaper: Shaper | undefined;
  /** Transactions sent over each connection, for its group's messagesPerConnection. */
  readonly #uses = new WeakMap<OutboundSession, number>();
  /** The next egress address when shaping does not pick one. */
  #egressTurn = 0;
  #closed = false;

  constructor(options: SmtpTransportOptions) {
    const { config } = options;
    this.#mode = options.mode;
    this.#config = config;
    this.#helo = config.heloName ?? options.hostname;
    this.#shaper = options.mode === 'direct' ? options.shaper : undefined;
    this.#log = options.logger.child({ component: 'delivery' });
    if (options.mode === 'smarthost') {
      if (config.smarthost === undefined) {
        throw new SluiceError(
          'SLUICE_ERR_CONFIG_INVALID',
          'delivery.smarthost is required in smarthost mode',
        );
      }
      if (config.smarthost.username !== undefined && options.smarthostPassword === undefined) {
        throw new SluiceError(
          'SLUICE_ERR_CONFIG_INVALID',
          'delivery.smarthost.username is set but no password was given (smarthost.passwordFile)',
        );
      }
    }
    this.#smarthost = config.smarthost;
    const username = config.smarthost?.username;
    this.#auth =
      username !== undefined && options.smarthostPassword !== undefined
        ? { user: username, pass: options.smarthostPassword }
        : undefined;
    this.#resolver = new MxResolver({
      servers: config.resolvers,
      timeoutMs: Math.min(DNS_TIMEOUT_MS, config.connectTimeoutSeconds * 1000),
    });
    this.#destinations = new DestinationPolicy({
      allowLocalAddresses: config.allowLocalAddresses,
      allowedNetworks: config.allowedNetworks,
      ownAddresses: ownAddresses(),
    });
    this.#mxCa = options.caFile ? readCaFile(options.caFile) : undefined;
    this.#onMtaSts = options.onMtaSts;
    this.#mtaSts =
      options.mode === 'direct' && config.mtaSts.enabled
        ? new MtaStsPolicies({
            servers: config.resolvers,
            timeoutMs: Math.min(DNS_TIMEOUT_MS, config.connectTimeoutSeconds * 1000),
            ca: this.#mxCa,
            allowed: (address) => this.#destinations.check(address).allowed,
            ...(options.mtaStsPort === undefined ? {} : { port: options.mtaStsPort }),
            shared: options.sharedCache,
          })
        : undefined;
    this.#onDane = options.onDane;
    this.#dane = options.mode === 'direct' && config.dane.enabled ? this.#daneResolver(config) : undefined;
    this.#pool = new ConnectionPool({
      maxPerKey: config.maxConnectionsPerDomain,
      maxUses: config.messagesPerConnection,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    });
  }

  async deliver(job: DeliveryJob): Promise<RecipientResult[]> {
    if (job.recipients.length === 0) return [];
    const log = this.#log.child({ queueId: job.queueId });
    let results: RecipientResult[];
    const shaped: { limits?: GroupLimits } = {};
    try {
      results = (await this.#deliver(job, log, shaped)).map(classifyResult);
    } catch (err: unknown) {
      log.error({ event: 'delivery_error', err }, 'delivery failed unexpectedly');
      results = fail(
        job.recipients,
        local('deferred', '4.3.0', `local error: ${errorText(err)}`, 'local_error'),
      ).map(classifyResult);
    }
    if (shaped.limits && this.#shaper) {
      // the results stand whatever happens here: a delivered recipient must never be retried
      await this.#shaper
        .observe(shaped.limits, results)
        .catch((err: unknown) =>
          log.warn(
            { event: 'shaping_error', group: shaped.limits?.group, err: errorText(err) },
            'cannot record a throttling reply in the shared state',
          ),
        );
    }
    // the queue logs the attempt (one line, with the reason and remote host); this is the detail
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          event: 'transport_result',
          domain: job.domain,
          remoteHost: results[0]?.remoteHost,
          reason: results[0]?.reason,
          recipients: results.map(({ address, outcome, status, class: cls }) => ({
            address,
            outcome,
            status,
            class: cls,
          })),
        },
        'transport result',
      );
    }
    return results;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pool.close();
    this.#dane?.close();
  }

  async #deliver(
    job: DeliveryJob,
    log: Logger,
    shaped: { limits?: GroupLimits },
  ): Promise<RecipientResult[]> {
    if (this.#closed) return fail(job.recipients, SHUTTING_DOWN);
    const found = this.#mode === 'smarthost' ? this.#smarthostRoute() : await this.#mxRoute(job.domain, log);
    if (!('key' in found)) return fail(job.recipients, found);
    const egressAddresses = this.#mode === 'direct' ? this.#config.egressAddresses : [];
    let egress: string | undefined;
    if (found.limits && this.#shaper) {
      // shaping picks the egress address whose share of the group's rate has room
      const admitted = await this.#shaper.admit(found.limits, egressAddresses);
      if (!('group' in admitted)) return fail(job.recipients, admitted);
      shaped.limits = admitted;
      egress = admitted.egress;
    } else if (egressAddresses.length > 0) {
      egress = egressAddresses[this.#egressTurn++ % egressAddresses.length];
    }
    // connections from one egress address are pooled apart from those of another
    const route: Route =
      egress === undefined
        ? found
        : {
            ...found,
            key: `${found.key}@${egress}`,
            connect: (connectLog) => found.connect(connectLog, egress),
          };

    let body: FileHandle | Buffer;
    try {
      // a just-received message's bytes are still in memory (one copy, no file read); else a
      // small message is read at once, synchronously (see spool/files.ts), and a large one
      // streams; the file holds the message's envelope after its job.size bytes. A message
      // in memory goes to nodemailer as one buffer, its DKIM signatures in front: no stream.
      body = job.body
        ? inOneBuffer(job.headerPrefix, job.body)
        : job.size <= SMALL_WRITE_BYTES
          ? inOneBuffer(job.headerPrefix, [readFileSync(job.bodyPath).subarray(0, job.size)])
          : await open(job.bodyPath, 'r');
    } catch (err: unknown) {
      log.error({ event: 'spool_error', err }, 'cannot read the spooled message');
      return fail(
        job.recipients,
        local('deferred', '4.3.0', 'cannot read the spooled message', 'local_error'),
      );
    }
    try {
      for (let attempt = 1; ; attempt++) {
        const checkout = await this.#checkout(route, log, shaped.limits);
        if (!('session' in checkout)) return fail(job.recipients, checkout);
        const { session, reused } = checkout;
        if (needsSmtpUtf8(job) && !session.offers('SMTPUTF8')) {
          this.#pool.release(route.key, session, true);
          return fail(job.recipients, smtpUtf8NotOffered(session.remoteHost));
        }
        let sent: Sent | undefined;
        try {
          const message = Buffer.isBuffer(body)
            ? body
            : withHeaderPrefix(
                job.headerPrefix,
                new RecycledFileReader(body, job.size, {
                  chunkBytes: READ_CHUNK_BYTES,
                  buffers: READ_BUFFERS,
                }),
              );
          sent = await session.send(job, message);
        } finally {
          const uses = (this.#uses.get(session) ?? 0) + 1;
          this.#uses.set(session, uses);
          const full = shaped.limits !== undefined && uses >= shaped.limits.messagesPerConnection;
          this.#pool.release(route.key, session, sent !== undefined && session.clean && !full);
        }
        // A pooled connection the server closed just as it was reused fails before any
        // reply: nothing was sent, so the message goes out on a new connection at once.
        if (reused && attempt < STALE_RETRIES + 1 && unanswered(sent)) {
          log.info(
            { event: 'stale_connection', remoteHost: session.remoteHost },
            'pooled connection lost, retrying',
          );
          continue;
        }
        const results = transactionResults(job.recipients, sent, session);
        // a next hop that offers DSN was given the request: success is its to report now
        if (job.dsn && session.offers('DSN')) {
          for (const r of results) if (r.outcome === 'delivered') r.dsnPassed = true;
        }
        return results;
      }
    } finally {
      if (!Buffer.isBuffer(body)) await body.close().catch(() => undefined);
    }
  }

  /**
   * An idle connection (after RSET if its last transaction was refused), or a new one; or
   * why there is none.
   */
  async #checkout(
    route: Route,
    log: Logger,
    limits?: GroupLimits,
  ): Promise<{ session: OutboundSession; reused: boolean } | Failure> {
    for (;;) {
      const lease = await this.#pool.acquire(route.key, route.fits);
      if (lease === 'closed') return SHUTTING_DOWN;
      if (lease === 'open') {
        // a new connection takes one of the group's slots on all relays, until it is closed
        let slot: (() => void) | Failure = () => undefined;
        if (limits && this.#shaper) {
          try {
            slot = await this.#shaper.connection(limits);
          } catch (err: unknown) {
            this.#pool.discard(route.key);
            throw err;
          }
          if (typeof slot !== 'function') {
            this.#pool.discard(route.key);
            return slot;
          }
        }
        const release = slot;
        let opened: OutboundSession | Failure;
        try {
          opened = await route.connect(log);
        } catch (err: unknown) {
          release();
          this.#pool.discard(route.key);
          throw err;
        }
        if (!(opened instanceof OutboundSession)) {
          release();
          this.#pool.discard(route.key);
          return opened;
        }
        opened.onClose(release);
        return { session: opened, reused: false };
      }
      if (!lease.needsReset || (await lease.reset())) return { session: lease, reused: true };
      this.#pool.discard(route.key, lease);
    }
  }

  async #mxRoute(domain: string, log: Logger): Promise<Route | Failure> {
    const answer = await this.#resolver.resolve(domain);
    switch (answer.kind) {
      case 'null-mx':
        return local(
          'bounced',
          '5.1.10',
          `domain ${domain} does not accept mail (null MX, RFC 7505)`,
          'null_mx',
        );
      case 'no-domain':
        return local('bounced', '5.1.2', `domain ${domain} not found: no MX or address records`, 'no_domain');
      case 'temporary':
        return local('deferred', '4.4.3', answer.reason, 'dns_tempfail');
      case 'hosts': {
        const policy = await this.#policy(domain, log);
        let hosts = answer.hosts;
        // the domain's destination group (Google, Microsoft, …), a bounded label for TLS outcomes
        const group = this.#shaper?.limitsFor(hosts.map((h) => h.exchange)).group ?? 'default';
        if (policy.mode === 'enforce') {
          // RFC 8461 4.1: only MX hosts the policy names; none left is a temporary failure
          hosts = hosts.filter((h) => mxMatches(h.exchange, policy.mx));
          if (hosts.length === 0) {
            this.#mtaStsOutcome(log, domain, group, 'enforce', 'failed', {
              problem: 'no MX host matches the policy',
            });
            return local(
              'deferred',
              '4.7.5',
              `no MX host of ${domain} matches its MTA-STS policy (mx: ${policy.mx.join(', ')})`,
              'mta_sts_failed',
            );
          }
        }
        const names = new Set(hosts.map((h) => h.exchange.toLowerCase()));
        const shaper = this.#shaper?.enabled ? this.#shaper : undefined;
        return {
          // connections made under a policy are pooled apart from those made without
          key: `mx:${domain.toLowerCase()}${policy.mode === 'none' ? '' : `:sts-${policy.mode}`}`,
          ...(shaper ? { limits: shaper.limitsFor(hosts.map((h) => h.exchange)) } : {}),
          // a pooled connection is only reused while its host is still one of the domain's MX
          fits: (session) => names.has(session.remoteHost.toLowerCase()),
          connect: (connectLog, egress) => this.#connectMx(domain, group, hosts, connectLog, policy, egress),
        };
      }
    }
  }

  /**
   * The MX hosts' addresses that the destination policy allows (mx-targets.ts), or why
   * there are none. Refused addresses are logged: they are what an SSRF attempt looks like.
   */
  async #targets(domain: string, hosts: MxHost[], log: Logger): Promise<MxTarget[] | Failure> {
    const resolved = await Promise.all(
      hosts.slice(0, MAX_MX_HOSTS).map(async (host) => ({
        host,
        answer: await this.#resolver.addresses(host.exchange),
      })),
    );
    const plan = planTargets(domain, resolved, this.#destinations);
    if (plan.refused.length > 0) {
      log.warn(
        { event: 'delivery_address_refused', domain, reason: 'local_address', refused: plan.refused },
        'MX addresses that are not globally routable were skipped',
      );
    }
    return plan.kind === 'targets' ? plan.targets : plan.failure;
  }

  /**
   * Tries the MX hosts in order, and each host's allowed addresses, until one gives a
   * usable SMTP session. The addresses are looked up and checked here, and mx-connect is
   * given them; its connect hook checks again the very address it is about to connect to.
   * mx-connect does TCP; a host that accepts TCP but fails at SMTP level is skipped by its
   * address on the next round.
   */
  /** The validating resolver DANE trusts: dane.resolver, else the first delivery resolver, else the system's. */
  #daneResolver(config: DeliveryConfig): DaneResolver {
    const server = config.dane.resolver ?? config.resolvers[0] ?? getServers()[0];
    if (server === undefined) {
      throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', 'delivery.dane.resolver: no resolver to ask');
    }
    return new DaneResolver({
      server,
      timeoutMs: Math.min(DNS_TIMEOUT_MS, config.connectTimeoutSeconds * 1000),
    });
  }

  #daneFailure(log: Logger, domain: string, group: string, remoteHost: string, problem: string): Failure {
    this.#onDane?.('failed', group);
    log.warn({ event: 'dane', domain, group, remoteHost, result: 'failed', problem }, 'DANE check failed');
    const failure = local('deferred', '4.7.5', `DANE: ${problem}`, 'dane_failed');
    failure.remoteHost = remoteHost;
    return failure;
  }

  /** The domain's MTA-STS policy (NO_POLICY when MTA-STS is off or none is published). */
  async #policy(domain: string, log: Logger): Promise<MtaStsPolicy> {
    if (!this.#mtaSts || domain.startsWith('[')) return NO_POLICY;
    const { policy, error } = await this.#mtaSts.policyFor(domain);
    if (error) {
      log.warn(
        { event: 'mta_sts_policy_error', domain, mode: policy.mode, err: error },
        'MTA-STS policy could not be refreshed',
      );
    }
    return policy;
  }

  #mtaStsOutcome(
    log: Logger,
    domain: string,
    group: string,
    mode: 'enforce' | 'testing',
    result: MtaStsOutcome['result'],
    fields: Record<string, unknown> = {},
  ): void {
    this.#onMtaSts?.({ mode, result }, group);
    const line = { event: 'mta_sts', domain, group, mode, result, ...fields };
    if (result === 'enforced' || result === 'testing_ok') log.info(line, 'MTA-STS');
    else log.warn(line, 'MTA-STS check failed');
  }

  async #connectMx(
    domain: string,
    group: string,
    hosts: MxHost[],
    log: Logger,
    policy: MtaStsPolicy,
    egress?: string,
  ): Promise<OutboundSession | Failure> {
    const enforce = policy.mode === 'enforce';
    // an IPv4 egress address binds connections to IPv4 MX addresses, an IPv6 one to IPv6
    const bind =
      egress === undefined
        ? {}
        : isIPv6(egress)
          ? { localAddressIPv6: egress }
          : { localAddressIPv4: egress };
    const targets = await this.#targets(domain, hosts, log);
    if (!Array.isArray(targets)) return targets;
    const tried: string[] = [];
    let failure: Failure | undefined;
    const connectMs = this.#config.connectTimeoutSeconds * 1000;
    for (;;) {
      let connection: MxConnection;
      try {
        connection = await mxConnect({
          target: domain,
          mx: targets,
          port: this.#config.port,
          maxConnectTime: connectMs,
          ignoreMXHosts: tried,
          ...bind,
          // every lookup of a delivery goes to the configured servers (none is left to it)
          dnsOptions: { resolve: this.#resolver.callbackResolve },
          connectHook: (_delivery, target, done) => {
            const verdict = this.#destinations.check(target.host);
            done(verdict.allowed ? undefined : refusedAtConnect(target.host, verdict.range));
          },
          connectError: (err, _delivery, target) =>
            log.info(
              { event: 'delivery_connect_failed', host: target.host, err: err.message },
              'MX host unreachable',
            ),
        });
      } catch (err: unknown) {
        // a host that answered says more than the TCP failures of the hosts after it
        return mxConnectFailure(domain, err, failure);
      }
      tried.push(connection.host);
      const remoteHost = connection.hostname;
      const tlsa = this.#dane ? await this.#dane.tlsa(remoteHost, this.#config.port) : undefined;
      if (tlsa?.kind === 'failed') {
        // RFC 7672 2.2: a TLSA lookup that fails (bogus data, SERVFAIL) is no licence to go on
        connection.socket.destroy();
        failure = this.#daneFailure(log, domain, group, remoteHost, tlsa.reason);
        continue;
      }
      // DANE wins over MTA-STS where validated TLSA records exist (RFC 8461 2)
      const dane = tlsa?.kind === 'records' ? tlsa.records : undefined;
      const stsEnforce = enforce && dane === undefined;
      try {
        const ca = this.#mxCa ? { ca: this.#mxCa } : {};
        const session = await OutboundSession.open(remoteHost, {
          ...this.#timeouts(),
          connection: connection.socket,
          host: remoteHost,
          name: this.#helo,
          ...(dane
            ? // DANE: TLS or nothing; the certificate is judged by the TLSA records below
              { requireTLS: true, tls: { rejectUnauthorized: false, ...ca } }
            : stsEnforce
              ? // MTA-STS enforce: TLS with a certificate valid for the MX name, or no delivery
                { requireTLS: true, tls: { rejectUnauthorized: true, servername: remoteHost, ...ca } }
              : // MX certificates cannot be verified in general; encryption still beats clear text
                { opportunisticTLS: true, tls: { rejectUnauthorized: false, ...ca } }),
        });
        if (dane) {
          const certs = session.peerCertificates;
          const verdict = certs
            ? verifyDane(certs.peer, certs.chain, dane)
            : { ok: false as const, error: 'no certificate' };
          if (!verdict.ok) {
            session.close();
            failure = this.#daneFailure(log, domain, group, remoteHost, `${remoteHost}: ${verdict.error}`);
            continue;
          }
          this.#onDane?.('verified', group);
          log.info({ event: 'dane', domain, remoteHost, result: 'verified', usage: verdict.usage }, 'DANE');
          return session;
        }
        if (stsEnforce) this.#mtaStsOutcome(log, domain, group, 'enforce', 'enforced', { remoteHost });
        if (policy.mode === 'testing') {
          const problem = testingProblem(session.remoteHost, session.tlsVerification, policy);
          this.#mtaStsOutcome(log, domain, group, 'testing', problem ? 'testing_failed' : 'testing_ok', {
            remoteHost,
            ...(problem ? { problem } : {}),
          });
        }
        if (this.#config.requireTls && !session.secure) {
          session.close();
          failure = local(
            'deferred',
            '4.7.10',
            `TLS required but not offered by ${remoteHost}`,
            'tls_required',
          );
          failure.remoteHost = remoteHost;
          continue;
        }
        return session;
      } catch (err: unknown) {
        failure = setupFailure(err, remoteHost);
        if (dane) this.#daneFailure(log, domain, group, remoteHost, errorText(err));
        else if (stsEnforce) {
          this.#mtaStsOutcome(log, domain, group, 'enforce', 'failed', {
            remoteHost,
            problem: errorText(err),
          });
        }
        log.info({
          event: 'delivery_session_failed',
          remoteHost,
          reason: failure.reason,
          err: errorText(err),
        });
      }
    }
  }

  #smarthostRoute(): Route {
    return { key: 'smarthost', fits: () => true, connect: (log) => this.#connectSmarthost(log) };
  }

  /** The smarthost, or else each fallback host in order; the last failure when none works. */
  async #connectSmarthost(log: Logger): Promise<OutboundSession | Failure> {
    const smarthost = this.#smarthost as SmarthostConfig; // checked in the constructor
    let failure: Failure | undefined;
    for (const host of [smarthost.host, ...(smarthost.fallbackHosts ?? [])]) {
      const session = await this.#connectSmarthostHost(smarthost, host, log);
      if (session instanceof OutboundSession) return session;
      failure = session;
    }
    return failure as Failure;
  }

  async #connectSmarthostHost(
    smarthost: SmarthostConfig,
    host: string,
    log: Logger,
  ): Promise<OutboundSession | Failure> {
    try {
      return await OutboundSession.open(
        host,
        {
          ...this.#timeouts(),
          host,
          port: smarthost.port,
          name: this.#helo,
          secure: smarthost.tls === 'implicit',
          requireTLS: smarthost.tls === 'starttls',
          ignoreTLS: smarthost.tls === 'none',
          // tls.trustedCaFile: a smarthost of a private PKI verifies as an MX host would
          tls: {
            rejectUnauthorized: smarthost.rejectUnauthorized,
            ...(this.#mxCa ? { ca: this.#mxCa } : {}),
          },
          allowInternalNetworkInterfaces: true,
        },
        this.#auth,
      );
    } catch (err: unknown) {
      const failure = setupFailure(err, host);
      // the smarthost is ours: a refusal there is a configuration problem someone must fix
      log.error(
        {
          event: 'smarthost_failed',
          remoteHost: host,
          reason: failure.reason,
          err: errorText(err),
        },
        `smarthost ${host}: ${failure.response}`,
      );
      return failure;
    }
  }

  #timeouts(): SMTPConnectionOptions {
    const connectMs = this.#config.connectTimeoutSeconds * 1000;
    return {
      connectionTimeout: connectMs,
      greetingTimeout: connectMs,
      dnsTimeout: connectMs,
      socketTimeout: SOCKET_TIMEOUT_MS,
      logger: false,
    };
  }
}

/** The relay's own interface addresses: an MX pointing at one of them would loop. */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}
