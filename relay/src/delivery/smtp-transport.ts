// Sends queued mail onward over SMTP: straight to each domain's MX hosts (opportunistic
// STARTTLS, local addresses refused unless allowed) or through one smarthost (its TLS mode,
// AUTH). Connections are pooled per destination. Every outcome is a per-recipient result:
// a reply the remote server gave, or a local reason with an RFC 3463 status.
import { type FileHandle, open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { NodemailerError } from 'nodemailer/lib/errors';
import SMTPConnection, {
  type SMTPConnectionEnvelope,
  type SMTPConnectionOptions,
  type SMTPEnvelope,
} from 'nodemailer/lib/smtp-connection';
import type { RelayConfig } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { ConnectionPool, type Poolable } from './connection-pool.ts';
import { type MxHost, MxResolver } from './mx-resolver.ts';
import type { DeliveryJob, RecipientOutcome, RecipientResult, Transport } from './types.ts';

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
  mx: MxHost[];
  port: number;
  maxConnectTime: number;
  ignoreMXHosts: string[];
  dnsOptions: { resolve: MxResolver['callbackResolve']; blockLocalAddresses: boolean };
  connectError?: (err: Error, delivery: unknown, target: { host?: string }) => void;
}) => Promise<MxConnection>;
const mxConnect = createRequire(import.meta.url)('mx-connect') as MxConnect;

/** Inactivity allowed mid-transaction (RFC 5321 4.5.3.2 asks for minutes, not seconds). */
const SOCKET_TIMEOUT_MS = 5 * 60_000;
const DNS_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 5_000;
/** A QUIT that gets no answer does not hold the socket open for longer than this. */
const QUIT_TIMEOUT_MS = 2_000;

export interface SmtpTransportOptions {
  mode: 'direct' | 'smarthost';
  config: DeliveryConfig;
  hostname: string;
  /** The smarthost AUTH password (read from smarthost.passwordFile by the caller). */
  smarthostPassword?: string;
  logger: Logger;
  /** How long an unused connection is kept for the next job to its destination. */
  idleTimeoutMs?: number;
}

/** Why a whole job failed before (or instead of) a transaction; `reason` goes to the log. */
interface Failure {
  outcome: RecipientOutcome;
  status: string;
  response: string;
  reason: string;
  remoteHost?: string;
}

/** The answers one transaction got. */
interface Sent {
  /** The final reply to the message data, when the server took it. */
  response?: string;
  error?: NodemailerError;
  accepted: string[];
  rejected: Array<{ recipient: string; response: string }>;
}

interface Route {
  key: string;
  /** Whether an idle pooled connection can carry this job. */
  fits(session: OutboundSession): boolean;
  connect(log: Logger): Promise<OutboundSession | Failure>;
}

export class SmtpTransport implements Transport {
  readonly #mode: 'direct' | 'smarthost';
  readonly #config: DeliveryConfig;
  readonly #smarthost: SmarthostConfig | undefined;
  readonly #auth: { user: string; pass: string } | undefined;
  readonly #helo: string;
  readonly #log: Logger;
  readonly #resolver: MxResolver;
  readonly #pool: ConnectionPool<OutboundSession>;
  #closed = false;

  constructor(options: SmtpTransportOptions) {
    const { config } = options;
    this.#mode = options.mode;
    this.#config = config;
    this.#helo = config.heloName ?? options.hostname;
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
    this.#pool = new ConnectionPool({
      maxPerKey: config.maxConnectionsPerDomain,
      maxUses: config.messagesPerConnection,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    });
  }

  async deliver(job: DeliveryJob): Promise<RecipientResult[]> {
    if (job.recipients.length === 0) return [];
    const log = this.#log.child({ queueId: job.queueId });
    let attempt: { results: RecipientResult[]; reason?: string };
    try {
      attempt = await this.#deliver(job, log);
    } catch (err: unknown) {
      log.error({ event: 'delivery_error', err }, 'delivery failed unexpectedly');
      attempt = fail(
        job.recipients,
        local('deferred', '4.3.0', `local error: ${errorText(err)}`, 'local_error'),
      );
    }
    const count = (outcome: RecipientOutcome) => attempt.results.filter((r) => r.outcome === outcome).length;
    log.info(
      {
        event: 'delivery_attempt',
        domain: job.domain,
        remoteHost: attempt.results[0]?.remoteHost,
        reason: attempt.reason,
        delivered: count('delivered'),
        deferred: count('deferred'),
        bounced: count('bounced'),
        recipients: attempt.results.map(({ address, outcome, status }) => ({ address, outcome, status })),
      },
      'delivery attempt',
    );
    return attempt.results;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pool.close();
  }

  async #deliver(job: DeliveryJob, log: Logger): Promise<{ results: RecipientResult[]; reason?: string }> {
    if (this.#closed) return fail(job.recipients, SHUTTING_DOWN);
    const route = this.#mode === 'smarthost' ? this.#smarthostRoute() : await this.#mxRoute(job.domain);
    if (!('key' in route)) return fail(job.recipients, route);

    let body: FileHandle;
    try {
      body = await open(job.bodyPath, 'r');
    } catch (err: unknown) {
      log.error({ event: 'spool_error', err }, 'cannot read the spooled message');
      return fail(
        job.recipients,
        local('deferred', '4.3.0', 'cannot read the spooled message', 'local_error'),
      );
    }
    try {
      const session = await this.#checkout(route, log);
      if (!(session instanceof OutboundSession)) return fail(job.recipients, session);
      let sent: Sent | undefined;
      try {
        sent = await session.send(job, body.createReadStream({ autoClose: false, start: 0 }));
      } finally {
        this.#pool.release(route.key, session, sent !== undefined && session.clean);
      }
      return { results: transactionResults(job.recipients, sent, session.remoteHost) };
    } finally {
      await body.close().catch(() => undefined);
    }
  }

  /** An idle connection that still answers RSET, or a new one; or why there is none. */
  async #checkout(route: Route, log: Logger): Promise<OutboundSession | Failure> {
    for (;;) {
      const lease = await this.#pool.acquire(route.key, route.fits);
      if (lease === 'closed') return SHUTTING_DOWN;
      if (lease === 'open') {
        let opened: OutboundSession | Failure;
        try {
          opened = await route.connect(log);
        } catch (err: unknown) {
          this.#pool.discard(route.key);
          throw err;
        }
        if (!(opened instanceof OutboundSession)) this.#pool.discard(route.key);
        return opened;
      }
      if (await lease.reset()) return lease;
      this.#pool.discard(route.key, lease);
    }
  }

  async #mxRoute(domain: string): Promise<Route | Failure> {
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
        const names = new Set(answer.hosts.map((h) => h.exchange.toLowerCase()));
        return {
          key: `mx:${domain.toLowerCase()}`,
          // a pooled connection is only reused while its host is still one of the domain's MX
          fits: (session) => names.has(session.remoteHost.toLowerCase()),
          connect: (log) => this.#connectMx(domain, answer.hosts, log),
        };
      }
    }
  }

  /**
   * Tries the MX hosts in order, and each host's addresses, until one gives a usable SMTP
   * session. mx-connect does the address lookups, the local-address filter and TCP; a host
   * that accepts TCP but fails at SMTP level is skipped by its address on the next round.
   */
  async #connectMx(domain: string, hosts: MxHost[], log: Logger): Promise<OutboundSession | Failure> {
    const tried: string[] = [];
    let failure: Failure | undefined;
    const connectMs = this.#config.connectTimeoutSeconds * 1000;
    for (;;) {
      let connection: MxConnection;
      try {
        connection = await mxConnect({
          target: domain,
          mx: hosts,
          port: this.#config.port,
          maxConnectTime: connectMs,
          ignoreMXHosts: tried,
          dnsOptions: {
            resolve: this.#resolver.callbackResolve,
            blockLocalAddresses: !this.#config.allowLocalAddresses,
          },
          connectError: (err, _delivery, target) =>
            log.info(
              { event: 'delivery_connect_failed', host: target.host, err: err.message },
              'MX host unreachable',
            ),
        });
      } catch (err: unknown) {
        // a host that answered says more than the TCP failures of the hosts after it
        return failure ?? mxConnectFailure(domain, err);
      }
      tried.push(connection.host);
      const remoteHost = connection.hostname;
      try {
        const session = await OutboundSession.open(remoteHost, {
          ...this.#timeouts(),
          connection: connection.socket,
          host: remoteHost,
          name: this.#helo,
          // MX certificates cannot be verified in general; encryption still beats clear text
          opportunisticTLS: true,
          tls: { rejectUnauthorized: false },
        });
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

  async #connectSmarthost(log: Logger): Promise<OutboundSession | Failure> {
    const smarthost = this.#smarthost as SmarthostConfig; // checked in the constructor
    try {
      return await OutboundSession.open(
        smarthost.host,
        {
          ...this.#timeouts(),
          host: smarthost.host,
          port: smarthost.port,
          name: this.#helo,
          secure: smarthost.tls === 'implicit',
          requireTLS: smarthost.tls === 'starttls',
          ignoreTLS: smarthost.tls === 'none',
          tls: { rejectUnauthorized: smarthost.rejectUnauthorized },
          allowInternalNetworkInterfaces: true,
        },
        this.#auth,
      );
    } catch (err: unknown) {
      const failure = setupFailure(err, smarthost.host);
      // the smarthost is ours: a refusal there is a configuration problem someone must fix
      log.error(
        {
          event: 'smarthost_failed',
          remoteHost: smarthost.host,
          reason: failure.reason,
          err: errorText(err),
        },
        `smarthost ${smarthost.host}: ${failure.response}`,
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

/** One SMTP client connection (nodemailer's SMTPConnection) behind promises. */
class OutboundSession implements Poolable {
  /** The MX or smarthost name this connection went to. */
  readonly remoteHost: string;
  readonly #conn: SMTPConnection;
  #failed = false;
  /** True while the session is between transactions in a known state (QUIT or reuse is fine). */
  #clean = true;

  private constructor(remoteHost: string, conn: SMTPConnection) {
    this.remoteHost = remoteHost;
    this.#conn = conn;
    // SMTPConnection emits 'error' besides failing the call in flight; without a listener
    // an error on an idle pooled connection would crash the process.
    conn.on('error', () => {
      this.#failed = true;
    });
    conn.on('end', () => {
      this.#failed = true;
    });
  }

  static async open(
    remoteHost: string,
    options: SMTPConnectionOptions,
    auth?: { user: string; pass: string },
  ): Promise<OutboundSession> {
    const session = new OutboundSession(remoteHost, new SMTPConnection(options));
    try {
      await session.#run((done) => session.#conn.connect((err) => done(err)));
      if (auth !== undefined) await session.#run((done) => session.#conn.login(auth, (err) => done(err)));
    } catch (err: unknown) {
      const tls = session.#conn.upgrading === true || isTlsError(err);
      session.#clean = false;
      session.close();
      throw tls ? new TlsSetupError(err) : err;
    }
    return session;
  }

  get usable(): boolean {
    return !this.#failed && !this.#conn.destroyed;
  }

  get secure(): boolean {
    return this.#conn.secure;
  }

  get clean(): boolean {
    return this.#clean && this.usable;
  }

  /** One transaction; never rejects. The body is streamed, dot-stuffed by nodemailer. */
  async send(job: DeliveryJob, body: Readable): Promise<Sent> {
    // nodemailer keeps its per-recipient bookkeeping on the envelope object it is given
    const envelope: SMTPEnvelope & Partial<Pick<SMTPConnectionEnvelope, 'accepted' | 'rejectedErrors'>> = {
      from: job.sender,
      to: [...job.recipients],
      size: job.size,
      use8BitMime: true,
    };
    const sent: Sent = { accepted: [], rejected: [] };
    try {
      await this.#run((done) =>
        this.#conn.send(envelope, body, (err, info) => {
          if (err === null) sent.response = info.response;
          done(err);
        }),
      );
    } catch (err: unknown) {
      sent.error = asSmtpError(err);
      body.destroy();
    }
    sent.accepted = envelope.accepted ?? [];
    for (const rejected of envelope.rejectedErrors ?? []) {
      if (rejected.recipient !== undefined && rejected.response !== undefined) {
        sent.rejected.push({ recipient: rejected.recipient, response: rejected.response });
      }
    }
    // After a reply-level refusal the session is still in step; after anything else it is not.
    const refused =
      sent.error?.response !== undefined && ['EENVELOPE', 'EMESSAGE'].includes(sent.error.code ?? '');
    this.#clean = sent.error === undefined || refused;
    return sent;
  }

  /** RSET before reusing a pooled connection; false when it no longer answers. */
  async reset(): Promise<boolean> {
    try {
      await this.#run((done) => this.#conn.reset((err) => done(err)));
      return true;
    } catch {
      this.#clean = false;
      return false;
    }
  }

  close(): void {
    if (!this.clean) {
      this.#conn.close();
      return;
    }
    this.#clean = false;
    this.#conn.quit();
    setTimeout(() => this.#conn.close(), QUIT_TIMEOUT_MS).unref();
  }

  /** Runs one command sequence, failing it too when the connection errors or ends meanwhile. */
  #run(start: (done: (err?: Error | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#failed) {
        reject(new Error(`connection to ${this.remoteHost} is closed`));
        return;
      }
      let settled = false;
      const finish = (err?: Error | null): void => {
        if (settled) return;
        settled = true;
        this.#conn.off('error', finish);
        this.#conn.off('end', onEnd);
        if (err) reject(err);
        else resolve();
      };
      const onEnd = (): void => finish(new Error(`connection to ${this.remoteHost} closed`));
      this.#conn.on('error', finish);
      this.#conn.on('end', onEnd);
      start(finish);
    });
  }
}

/** A failed TLS handshake (certificate, protocol), at STARTTLS or at connect. */
class TlsSetupError extends Error {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
    this.name = 'TlsSetupError';
  }
}

/** nodemailer reports handshake failures as socket errors; the original code tells them apart. */
function isTlsError(err: unknown): boolean {
  const e = asSmtpError(err);
  if (e.code === 'ETLS') return e.response === undefined;
  const code = e.originalCode ?? '';
  return code === 'EPROTO' || /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_/.test(code);
}

const SHUTTING_DOWN: Failure = local('deferred', '4.3.2', 'delivery is shutting down', 'shutting_down');

function local(outcome: RecipientOutcome, status: string, response: string, reason: string): Failure {
  return { outcome, status, response, reason };
}

function fail(recipients: string[], failure: Failure): { results: RecipientResult[]; reason: string } {
  const { outcome, status, response, remoteHost } = failure;
  return {
    reason: failure.reason,
    results: recipients.map((address) => ({
      address,
      outcome,
      status,
      response,
      ...(remoteHost !== undefined ? { remoteHost } : {}),
    })),
  };
}

/** The reply code, and the enhanced status code (or one derived from the reply code). */
export function parseReply(reply: string): { code: number; status: string } {
  const code = Number(/^\d{3}/.exec(reply)?.[0] ?? 0);
  const cls = Math.floor(code / 100);
  const klass = cls === 2 || cls === 5 ? cls : 4;
  const enhanced = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])/.exec(reply);
  const status =
    enhanced !== null && Number(enhanced[1]) === klass
      ? `${enhanced[1]}.${enhanced[2]}.${enhanced[3]}`
      : `${klass}.0.0`;
  return { code, status };
}

function fromReply(address: string, reply: string, remoteHost: string): RecipientResult {
  const { code, status } = parseReply(reply);
  const outcome: RecipientOutcome =
    code >= 200 && code < 300 ? 'delivered' : code >= 500 && code < 600 ? 'bounced' : 'deferred';
  return { address, outcome, status, response: reply.replace(/\r?\n/g, ' '), remoteHost };
}

/** Per-recipient results of one transaction. Only a 2xx to the message data means delivered. */
function transactionResults(recipients: string[], sent: Sent, remoteHost: string): RecipientResult[] {
  const { error } = sent;
  if (error?.command === 'MAIL FROM') {
    const reply = error.response;
    if (reply !== undefined) return recipients.map((address) => fromReply(address, reply, remoteHost));
    // nodemailer refuses before MAIL FROM when the message is over the host's advertised SIZE
    const response = `message size exceeds the limit of ${remoteHost}`;
    return recipients.map((address) => ({
      address,
      outcome: 'bounced',
      status: '5.3.4',
      response,
      remoteHost,
    }));
  }
  const rejected = new Map(sent.rejected.map((r) => [r.recipient, r.response]));
  const accepted = new Set(sent.accepted);
  const dataReply = sent.response ?? (error?.command === 'DATA' ? error.response : undefined);
  return recipients.map((address) => {
    const rcptReply = rejected.get(address);
    if (rcptReply !== undefined) return fromReply(address, rcptReply, remoteHost);
    if (accepted.has(address) && dataReply !== undefined) return fromReply(address, dataReply, remoteHost);
    return unfinished(address, error, remoteHost);
  });
}

/** A recipient whose transaction broke off before its final answer: try again later. */
function unfinished(
  address: string,
  error: NodemailerError | undefined,
  remoteHost: string,
): RecipientResult {
  if (error?.response !== undefined && /^4/.test(error.response))
    return fromReply(address, error.response, remoteHost);
  if (error?.code === 'ESTREAM') {
    return {
      address,
      outcome: 'deferred',
      status: '4.3.0',
      response: 'cannot read the spooled message',
      remoteHost,
    };
  }
  const response = `connection to ${remoteHost} lost: ${error?.message ?? 'no answer'}`;
  return { address, outcome: 'deferred', status: '4.4.2', response, remoteHost };
}

/** A session that could not be set up (greeting, EHLO, STARTTLS, AUTH) is always retried. */
function setupFailure(err: unknown, remoteHost: string): Failure {
  if (err instanceof TlsSetupError) {
    return {
      outcome: 'deferred',
      status: '4.7.5',
      response: `TLS with ${remoteHost} failed: ${err.message}`,
      reason: 'tls_failed',
      remoteHost,
    };
  }
  const e = asSmtpError(err);
  const failure = (status: string, response: string, reason: string): Failure => ({
    outcome: 'deferred',
    status,
    response,
    reason,
    remoteHost,
  });
  if (e.code === 'EAUTH') {
    return failure(
      '4.7.0',
      `authentication at ${remoteHost} failed: ${e.response ?? e.message}`,
      'auth_failed',
    );
  }
  if (e.code === 'ETLS') {
    return failure('4.7.10', `TLS required but not offered by ${remoteHost}: ${e.response}`, 'tls_required');
  }
  if (e.response !== undefined) {
    // a refusal of the whole session (say a 554 greeting) is about this host, not the message
    const { status } = parseReply(e.response);
    return failure(
      `4${status.slice(1)}`,
      `${remoteHost} refused the session: ${e.response}`,
      'remote_refused',
    );
  }
  return failure('4.4.1', `no usable SMTP session with ${remoteHost}: ${e.message}`, 'connect_failed');
}

/**
 * mx-connect found no host to connect to. Hosts on loopback or private addresses count as
 * no usable MX and are deferred (4.4.4) rather than bounced: allowLocalAddresses or a DNS
 * fix can change that within the queue lifetime.
 */
function mxConnectFailure(domain: string, err: unknown): Failure {
  const e = err as { code?: unknown; category?: unknown; temporary?: unknown; message?: unknown };
  const detail = typeof e.message === 'string' ? e.message : String(err);
  if (e.code === 'InvalidIpAddress') {
    return local('deferred', '4.4.4', `no usable MX host for ${domain}: ${detail}`, 'no_usable_mx');
  }
  if (e.category === 'dns') {
    return e.temporary === true
      ? local('deferred', '4.4.3', detail, 'dns_tempfail')
      : local('deferred', '4.4.4', `no usable MX host for ${domain}: ${detail}`, 'no_usable_mx');
  }
  return local(
    'deferred',
    '4.4.1',
    `could not connect to any MX host of ${domain}: ${detail}`,
    'connect_failed',
  );
}

function asSmtpError(err: unknown): NodemailerError {
  return err instanceof Error ? (err as NodemailerError) : new Error(String(err));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
