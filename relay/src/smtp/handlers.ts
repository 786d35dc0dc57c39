// The SMTP front's decisions, wired into smtp-server's callbacks. Each refusal comes
// from the reply table and is counted and logged once, with its reason.

import type { TLSSocket } from 'node:tls';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server';
import type { UserRecord } from '../config/schema.ts';
import type { DnsblVerdict } from '../dnsbl/checker.ts';
import type { Logger } from '../observability/logger.ts';
import { ATTR, inSpan, SpanKind, startSpan, traced, traceFields } from '../observability/spans.ts';
import { handoffFromOutside } from '../policy/handoff-origin.ts';
import { decideRecipient } from '../policy/recipients.ts';
import { isSenderAllowed } from '../policy/sender.ts';
import type { CheckOutcome, MailAllowance } from '../policy/shared-checks.ts';
import type { DsnNotify } from '../spool/envelope.ts';
import type { Suppression } from '../suppression/suppression-list.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { authUserFields } from './auth-log.ts';
import {
  badDsnValue,
  declaredSize,
  declaresSmtpUtf8,
  MAIL_PARAMETERS,
  parameterValue,
  RCPT_PARAMETERS,
  recipientAddress,
  unsupportedParameter,
} from './parameters.ts';
import { receiveMessage } from './receive-message.ts';
import type { RefusalRecorder, Stage } from './refusals.ts';
import { REPLIES, type ReplyKey, type SmtpReplyError } from './replies.ts';
import type { DataPort, EnvelopePort, RelayRuntime, SessionPort } from './runtime.ts';
import type { ConnectionState } from './session-state.ts';
import {
  describeCheck,
  describeDnsbl,
  endSession,
  endTransaction,
  failTransaction,
  startTransaction,
} from './session-trace.ts';

type Callback = (err?: Error | null) => void;

export class SmtpHandlers {
  /** Each stage sees only its port: connect and AUTH, MAIL and RCPT, DATA. */
  readonly #session: SessionPort;
  readonly #envelope: EnvelopePort;
  readonly #data: DataPort;
  readonly #listener: string;
  readonly #refusals: RefusalRecorder;
  /** Sessions whose connection was over a cap when it was accepted (see ConnectionSlots). */
  readonly #overCap = new Map<string, ReplyKey>();

  constructor(rt: RelayRuntime, listener: string, refusals: RefusalRecorder) {
    this.#session = rt;
    this.#envelope = rt;
    this.#data = rt;
    this.#listener = listener;
    this.#refusals = refusals;
  }

  /**
   * The listener's verdict on the connection caps, taken when the connection was accepted:
   * the session gets this refusal at connect instead of a greeting.
   */
  overCap(sessionId: string, refusal: ReplyKey | undefined): void {
    if (refusal) this.#overCap.set(sessionId, refusal);
    else this.#overCap.delete(sessionId);
  }

  state(sessionId: string): ConnectionState | undefined {
    return this.#refusals.session(sessionId);
  }

  /** Counts and logs a refusal (RefusalRecorder.refuse), returning the error for the reply. */
  refuse(
    state: ConnectionState | undefined,
    stage: Stage,
    key: ReplyKey,
    vars: Record<string, string | number> = {},
    fields: Record<string, unknown> = {},
    log: Logger | undefined = state?.log,
  ): SmtpReplyError {
    return this.#refusals.refuse(state, stage, key, vars, fields, log);
  }

  onConnect = (session: SMTPServerSession, callback: Callback): void => {
    const { hostname } = this.#session.config;
    const clientIp = session.remoteAddress;
    const span = startSpan(
      this.#session.tracer,
      'smtp.session',
      undefined,
      {
        [ATTR.sessionId]: session.id,
        [ATTR.listener]: this.#listener,
        [ATTR.clientAddress]: clientIp,
      },
      SpanKind.SERVER,
    );
    // every line of the session carries its trace, so logs and traces find each other
    const log = this.#session.logger.child({
      sessionId: session.id,
      clientIp,
      listener: this.#listener,
      ...traceFields(span),
    });
    const state: ConnectionState = {
      sessionId: session.id,
      listener: this.#listener,
      clientIp,
      openedAt: Date.now(),
      log,
      counted: false,
      slot: false,
      tags: [],
      messages: 0,
      rejections: 0,
      span,
    };
    this.#refusals.opened(state);
    this.#session.metrics.connectionsTotal.inc({ listener: this.#listener });
    if (this.#session.draining) {
      state.closeReason = 'shutting_down';
      return callback(this.refuse(state, 'connect', 'SHUTTING_DOWN', { hostname }));
    }
    const overCap = this.#overCap.get(session.id);
    if (overCap) {
      this.#overCap.delete(session.id);
      state.closeReason = REPLIES[overCap].reason;
      return callback(this.refuse(state, 'connect', overCap, { hostname }));
    }
    state.counted = true;
    this.#session.metrics.connectionsOpen.inc({ listener: this.#listener });
    this.#sharedConnectChecks(state).then(
      () => callback(),
      (err: Error) => callback(err),
    );
  };

  /** Cross-pod connection slot, then the DNSBL when it is checked at connect. */
  async #sharedConnectChecks(state: ConnectionState): Promise<void> {
    const { hostname, dnsbl } = this.#session.config;
    const slot = await traced(
      this.#session.tracer,
      'ratelimit.check',
      state.span,
      { [ATTR.stage]: 'connect' },
      () => this.#session.checks.acquireConnection(state.clientIp, state.sessionId),
      describeCheck,
    );
    if (slot.kind === 'rate_limited') {
      state.closeReason = 'too_many_connections_ip';
      throw this.refuse(state, 'connect', 'TOO_MANY_CONNECTIONS_IP', { hostname });
    }
    if (slot.kind === 'unavailable')
      throw this.refuse(state, 'connect', 'STATE_TEMPFAIL_CONNECT', { hostname });
    state.slot = slot.kind === 'ok';
    if (dnsbl.checkAt !== 'connect') return;
    const refusal = this.#dnsblRefusal(state, await this.#dnsblVerdict(state, 'connect'), 'connect');
    if (refusal) {
      state.closeReason = refusal.reason;
      throw refusal;
    }
  }

  /** The DNSBL verdict for the client, in a dnsbl.check span under the session. */
  #dnsblVerdict(state: ConnectionState, stage: 'connect' | 'auth'): Promise<DnsblVerdict | undefined> {
    if (!this.#session.checks.dnsblEnabled()) return Promise.resolve(undefined);
    return traced(
      this.#session.tracer,
      'dnsbl.check',
      state.span,
      { [ATTR.stage]: stage },
      () => this.#session.checks.dnsblVerdict(state.clientIp),
      describeDnsbl,
    );
  }

  /** Applies a DNSBL verdict: the refusal to send, or undefined to let the client on. */
  #dnsblRefusal(
    state: ConnectionState,
    verdict: DnsblVerdict | undefined,
    stage: 'connect' | 'mail',
  ): SmtpReplyError | undefined {
    if (!verdict) return undefined;
    const { hostname, dnsbl } = this.#session.config;
    for (const hit of verdict.listed) {
      this.#session.metrics.dnsblListedTotal.inc({ zone: hit.zone, action: hit.action });
      if (hit.action === 'tag') {
        state.tags.push(`dnsbl:${hit.zone}`);
        state.log.info({ event: 'dnsbl_tagged', zone: hit.zone, code: hit.code }, 'client listed (tag only)');
      }
    }
    const reject = verdict.listed.find((h) => h.action === 'reject');
    if (reject) {
      const key = stage === 'connect' ? 'DNSBL_LISTED_CONNECT' : 'DNSBL_LISTED';
      return this.refuse(
        state,
        stage,
        key,
        { message: reject.message },
        { zone: reject.zone, code: reject.code },
      );
    }
    const failed = verdict.failed[0];
    if (failed && dnsbl.onError === 'tempfail') {
      const key = stage === 'connect' ? 'DNSBL_TEMPFAIL_CONNECT' : 'DNSBL_TEMPFAIL';
      return this.refuse(state, stage, key, { hostname, zone: failed.zone }, { failure: failed.reason });
    }
    return undefined;
  }

  checkRefusal(state: ConnectionState, stage: Stage, outcome: CheckOutcome): SmtpReplyError | undefined {
    return this.#refusals.checkRefusal(state, stage, outcome);
  }

  /** After the TLS handshake (implicit TLS or STARTTLS): counts it by protocol version. */
  onSecure = (socket: TLSSocket, session: SMTPServerSession, callback: Callback): void => {
    const version = socket.getProtocol?.() ?? 'unknown';
    this.#session.metrics.tlsConnectionsTotal.inc({ listener: this.#listener, version });
    this.#refusals.session(session.id)?.span.setAttributes({
      [ATTR.tlsVersion]: version,
      [ATTR.tlsCipher]: socket.getCipher?.()?.standardName ?? 'unknown',
    });
    callback();
  };

  onClose = (session: SMTPServerSession): void => {
    const state = this.#refusals.session(session.id);
    if (!state) return;
    this.#refusals.closed(session.id);
    if (state.counted) this.#session.metrics.connectionsOpen.dec({ listener: this.#listener });
    if (state.slot) void this.#session.checks.releaseConnection(state.clientIp, state.sessionId);
    endSession(state, Boolean(session.secure));
    state.log.info(
      {
        event: 'connection',
        tls: Boolean(session.secure),
        helo: session.hostNameAppearsAs || undefined,
        messages: state.messages,
        rejections: state.rejections,
        durationMs: Date.now() - state.openedAt,
        reason: state.closeReason,
      },
      'connection closed',
    );
  };

  onAuth = (
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void => {
    const state = this.#refusals.session(session.id);
    const username = auth.username ?? '';
    const userFields = authUserFields(username, this.#session.users.has(username));
    // the username goes on the span only once it authenticated: a failed one may be a mistyped password
    inSpan(
      this.#session.tracer,
      'smtp.auth',
      state?.span,
      { 'sluice.auth.method': auth.method },
      async (span) => {
        const refusal = await this.#authenticate(
          state,
          username,
          auth.password ?? '',
          auth.method,
          userFields,
        );
        span.setAttribute(ATTR.result, authResult(refusal));
        if (!refusal) {
          span.setAttribute(ATTR.user, username);
          state?.span.setAttribute(ATTR.user, username);
        }
        return refusal;
      },
    ).then(
      (err) => (err ? callback(err) : callback(null, { user: username })),
      (err: unknown) => {
        (state?.log ?? this.#session.logger).error(
          { event: 'auth_error', err },
          'password verification failed',
        );
        callback(this.refuse(state, 'auth', 'AUTH_TEMPFAIL', {}, userFields));
      },
    );
  };

  /** Lockout check, password check, failure counting; the refusal or undefined on success. */
  async #authenticate(
    state: ConnectionState | undefined,
    username: string,
    password: string,
    method: string,
    userFields: Record<string, string>,
  ): Promise<SmtpReplyError | undefined> {
    const ip = state?.clientIp ?? '';
    const lock = await this.#session.checks.authLocked(username, ip);
    if (lock.kind === 'locked' || lock.kind === 'unavailable') {
      this.#session.metrics.authTotal.inc({ result: 'locked' });
      return state
        ? this.checkRefusal(state, 'auth', lock)
        : this.refuse(state, 'auth', 'AUTH_TEMPFAIL', {}, userFields);
    }
    const outcome = await this.#session.authenticator.authenticate(username, password);
    // checked after the password, so a refusal takes as long as any wrong password
    if (handoffFromOutside(this.#session.config, username, ip)) {
      this.#session.metrics.authTotal.inc({ result: 'failure' });
      (state?.log ?? this.#session.logger).warn(
        { event: 'handoff_auth_refused', ...userFields, clientIp: ip },
        'AUTH as the handoff account from outside drain.handoff.fromNetworks',
      );
      await this.#session.checks.recordAuthFailure(
        username,
        ip,
        state?.log ?? this.#session.logger,
        userFields,
      );
      return this.refuse(state, 'auth', 'AUTH_FAILED', {}, userFields);
    }
    if (outcome.ok && this.#session.abuse?.isSuspended(outcome.user.username)) {
      this.#session.metrics.authTotal.inc({ result: 'suspended' });
      return this.refuse(state, 'auth', 'AUTH_SUSPENDED', {}, { ...userFields, abuse: true });
    }
    if (outcome.ok) {
      this.#session.metrics.authTotal.inc({ result: 'success' });
      if (state) {
        this.#session.usage?.authenticated(outcome.user.username, state.clientIp);
        state.user = outcome.user;
        state.log = state.log.child({ user: outcome.user.username });
        state.log.info({ event: 'auth', method, result: 'success' }, 'authenticated');
        if (this.#session.config.dnsbl.checkAt === 'auth') {
          state.dnsbl = this.#dnsblVerdict(state, 'auth');
          state.dnsbl.catch(() => undefined);
        }
      }
      return undefined;
    }
    const suspended = outcome.reason === 'auth_suspended';
    this.#session.metrics.authTotal.inc({ result: suspended ? 'suspended' : 'failure' });
    if (!suspended) {
      await this.#session.checks.recordAuthFailure(
        username,
        ip,
        state?.log ?? this.#session.logger,
        userFields,
      );
    }
    return this.refuse(state, 'auth', suspended ? 'AUTH_SUSPENDED' : 'AUTH_FAILED', {}, userFields);
  }

  onMailFrom = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    const state = this.#refusals.session(session.id);
    if (!state) return callback(this.refuse(state, 'mail', 'AUTH_REQUIRED'));
    startTransaction(this.#envelope.tracer, state);
    const refused = (err: Error) => {
      failTransaction(state, err, 'error');
      callback(err);
    };
    const sender = address.address;
    const parameter = unsupportedParameter(address, MAIL_PARAMETERS);
    if (parameter !== undefined) {
      return refused(this.refuse(state, 'mail', 'UNSUPPORTED_PARAMETER', { parameter }));
    }
    const envid = parameterValue(address, 'ENVID');
    const badEnvid = envid === undefined ? undefined : badDsnValue('ENVID', envid);
    if (badEnvid !== undefined) {
      return refused(
        this.refuse(state, 'mail', 'INVALID_PARAMETER', { parameter: 'ENVID', detail: badEnvid }),
      );
    }
    const ret = parameterValue(address, 'RET')?.toUpperCase();
    const smtpUtf8 = declaresSmtpUtf8(address);
    if (!smtpUtf8 && isInternationalised(sender)) {
      return refused(this.refuse(state, 'mail', 'SMTPUTF8_REQUIRED', { address: sender }, { sender }));
    }
    if (!state.user) return refused(this.refuse(state, 'mail', 'AUTH_REQUIRED'));
    // the users file may have changed since AUTH: a removed or suspended user stops here
    const user = this.#envelope.users.get(state.user.username);
    if (!user || user.suspended || this.#envelope.abuse?.isSuspended(user.username)) {
      return refused(this.refuse(state, 'mail', 'ACCOUNT_DISABLED', { user: state.user.username }));
    }
    state.user = user;
    if (!isSenderAllowed(sender, user.allowedSenders)) {
      return refused(
        this.refuse(state, 'mail', 'SENDER_NOT_ALLOWED', { sender, user: user.username }, { sender }),
      );
    }
    // RFC 1870: a declared SIZE the disk cannot take now gets 452, before any data is sent
    if (!this.#envelope.spoolRoom(declaredSize(address))) {
      return refused(this.refuse(state, 'mail', 'INSUFFICIENT_STORAGE', {}, { sender }));
    }
    this.#mailChecks(state, user).then(
      (allowance) => {
        state.tx = {
          sender,
          smtpUtf8,
          recipients: [],
          dropped: 0,
          allowance: allowance.recipients,
          mail: { counted: allowance.counted, ...(allowance.credit ? { credit: allowance.credit } : {}) },
          ...(ret === 'FULL' || ret === 'HDRS' ? { ret } : {}),
          ...(envid !== undefined ? { envid } : {}),
        };
        callback();
      },
      (err: Error) => refused(err),
    );
  };

  /** DNSBL verdict from AUTH (checkAt: auth) and the message rate limits; the recipient allowance. */
  async #mailChecks(state: ConnectionState, user: UserRecord): Promise<MailAllowance> {
    if (state.dnsbl) {
      const refusal = this.#dnsblRefusal(state, await state.dnsbl, 'mail');
      if (refusal) throw refusal;
    }
    const allowed = await traced(
      this.#envelope.tracer,
      'ratelimit.check',
      state.txSpan,
      { [ATTR.stage]: 'mail' },
      () => this.#envelope.checks.allowMail(user, state.clientIp, state.credit),
      (a) => describeCheck(a.outcome),
    );
    // the credit is spent on this message; the end of DATA gives the next one
    state.credit = undefined;
    const refusal = this.checkRefusal(state, 'mail', allowed.outcome);
    if (refusal) throw refusal;
    return allowed;
  }

  onRcptTo = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    const state = this.#refusals.session(session.id);
    const tx = state?.tx;
    if (!state || !tx) return callback(this.refuse(state, 'rcpt', 'AUTH_REQUIRED'));
    const limits = this.#envelope.config.limits;
    const rcpt = recipientAddress(address.address, this.#envelope.config);
    if (rcpt !== address.address) {
      state.log.info(
        { event: 'postmaster', recipient: rcpt },
        'RCPT TO:<postmaster> goes to the postmaster address',
      );
    }
    const parameter = unsupportedParameter(address, RCPT_PARAMETERS);
    if (parameter !== undefined) {
      return callback(
        this.refuse(state, 'rcpt', 'UNSUPPORTED_PARAMETER', { parameter }, { recipient: rcpt }),
      );
    }
    if (!tx.smtpUtf8 && isInternationalised(rcpt)) {
      return callback(
        this.refuse(state, 'rcpt', 'SMTPUTF8_REQUIRED', { address: rcpt }, { recipient: rcpt }),
      );
    }
    const orcpt = address.dsn?.orcpt;
    const badOrcpt = orcpt === undefined ? undefined : badDsnValue('ORCPT', orcpt);
    if (badOrcpt !== undefined) {
      return callback(
        this.refuse(
          state,
          'rcpt',
          'INVALID_PARAMETER',
          { parameter: 'ORCPT', detail: badOrcpt },
          { recipient: rcpt },
        ),
      );
    }
    // smtp-server replaces a repeated RCPT in the envelope; count it once here too
    if (tx.recipients.some((r) => r.toLowerCase() === rcpt.toLowerCase())) return callback();
    switch (decideRecipient(tx.recipients.length, limits)) {
      case 'accept':
        if (tx.recipients.length >= tx.allowance && state.user) {
          this.#envelope.metrics.recipientsTotal.inc({ result: 'rejected' });
          return callback(
            this.checkRefusal(
              state,
              'rcpt',
              this.#envelope.checks.recipientLimited(state.user, state.clientIp),
            ),
          );
        }
        return void this.#suppressed(state, rcpt).then((refusal) => {
          if (refusal) {
            this.#envelope.metrics.recipientsTotal.inc({ result: 'rejected' });
            return callback(refusal);
          }
          tx.recipients.push(rcpt);
          if (address.dsn?.notify || orcpt !== undefined) {
            tx.rcptDsn ??= new Map();
            tx.rcptDsn.set(rcpt, {
              ...(address.dsn?.notify ? { notify: address.dsn.notify as DsnNotify[] } : {}),
              ...(orcpt !== undefined ? { orcpt } : {}),
            });
          }
          this.#envelope.metrics.recipientsTotal.inc({ result: 'accepted' });
          callback();
        });
      case 'drop':
        tx.dropped++;
        this.#envelope.metrics.recipientsTotal.inc({ result: 'dropped' });
        return callback();
      case 'reject':
        this.#envelope.metrics.recipientsTotal.inc({ result: 'rejected' });
        return callback(
          this.refuse(
            state,
            'rcpt',
            'TOO_MANY_RECIPIENTS',
            { limit: limits.maxRecipients },
            { recipient: rcpt },
          ),
        );
    }
  };

  /**
   * The refusal of a recipient that bounced and is suppressed, or undefined. A state store
   * that cannot answer lets the recipient through: delivery bounces it again at worst.
   */
  async #suppressed(state: ConnectionState, rcpt: string): Promise<SmtpReplyError | undefined> {
    const suppression = this.#envelope.suppression;
    if (!suppression) return undefined;
    let hit: Suppression | null;
    try {
      hit = await suppression.check(rcpt);
    } catch (err: unknown) {
      state.log.warn(
        {
          event: 'suppression_unavailable',
          recipient: rcpt,
          err: err instanceof Error ? err.message : String(err),
        },
        'cannot check the suppression list; recipient accepted',
      );
      return undefined;
    }
    if (hit === null) return undefined;
    return this.refuse(
      state,
      'rcpt',
      'RECIPIENT_SUPPRESSED',
      {
        recipient: rcpt,
        class: hit.class,
        reply: hit.reply.slice(0, 120),
        since: hit.since,
        until: hit.until,
      },
      { recipient: rcpt, class: hit.class },
    );
  }

  onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void => {
    const state = this.#refusals.session(session.id);
    if (!state?.user || !state.tx) {
      stream.resume();
      return callback(this.refuse(state, 'data', 'AUTH_REQUIRED'));
    }
    const tx = state.tx;
    receiveMessage({ rt: this.#data, handlers: this.#refusals, state, tx, session, stream }).then(
      (reply) => {
        endTransaction(state, 'accepted', { [ATTR.recipients]: tx.recipients.length });
        callback(null, reply);
      },
      (err: Error) => {
        // a failure that is no refusal is the client leaving mid-DATA (see receiveMessage)
        failTransaction(state, err, 'aborted', {
          [ATTR.recipients]: tx.recipients.length,
          [ATTR.reason]: 'client_disconnected',
        });
        callback(err);
      },
    );
  };
}

/** The smtp.auth span's result, from the refusal #authenticate returned (or none). */
function authResult(refusal: SmtpReplyError | undefined): string {
  if (!refusal) return 'success';
  switch (refusal.reason) {
    case 'auth_failed':
      return 'failure';
    case 'auth_suspended':
      return 'suspended';
    case 'auth_locked_out':
      return 'locked';
    default:
      return refusal.reason;
  }
}
