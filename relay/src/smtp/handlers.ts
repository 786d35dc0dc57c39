// The SMTP front's decisions, wired into smtp-server's callbacks. Each refusal comes
// from the reply table and is counted and logged once, with its reason.
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server';
import type { Authenticator } from '../auth/authenticator.ts';
import type { RelayConfig, UserRecord } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import { decideRecipient } from '../policy/recipients.ts';
import { isSenderAllowed } from '../policy/sender.ts';
import type { Spool } from '../spool/spool.ts';
import { receiveMessage } from './receive-message.ts';
import { type ReplyKey, reject, type SmtpReplyError } from './replies.ts';
import type { ConnectionState } from './session-state.ts';

export interface RelayRuntime {
  readonly config: RelayConfig;
  readonly authenticator: Authenticator;
  readonly users: ReadonlyMap<string, UserRecord>;
  readonly spool: Spool;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  readonly draining: boolean;
}

type Callback = (err?: Error | null) => void;
export type Stage = 'connect' | 'auth' | 'mail' | 'rcpt' | 'data' | 'session';

export class SmtpHandlers {
  readonly #rt: RelayRuntime;
  readonly #listener: string;
  readonly #states = new Map<string, ConnectionState>();
  readonly #perIp: Map<string, number>;
  readonly #open: { count: number };

  /** perIp and open are shared by all listeners of one relay, so the caps are per relay. */
  constructor(
    rt: RelayRuntime,
    listener: string,
    shared: { perIp: Map<string, number>; open: { count: number } },
  ) {
    this.#rt = rt;
    this.#listener = listener;
    this.#perIp = shared.perIp;
    this.#open = shared.open;
  }

  state(sessionId: string): ConnectionState | undefined {
    return this.#states.get(sessionId);
  }

  /** Counts and logs a refusal, and returns the error smtp-server turns into the reply. */
  refuse(
    state: ConnectionState | undefined,
    stage: Stage,
    key: ReplyKey,
    vars: Record<string, string | number> = {},
    fields: Record<string, unknown> = {},
    log: Logger | undefined = state?.log,
  ): SmtpReplyError {
    const err = reject(key, vars);
    this.#rt.metrics.rejectionsTotal.inc({ reason: err.reason, stage });
    if (state) state.rejections++;
    (log ?? this.#rt.logger).info(
      {
        event: 'rejected',
        reason: err.reason,
        stage,
        reply: `${err.responseCode} ${err.message}`,
        ...fields,
      },
      'rejected',
    );
    return err;
  }

  onConnect = (session: SMTPServerSession, callback: Callback): void => {
    const { limits, hostname } = this.#rt.config;
    const clientIp = session.remoteAddress;
    const log = this.#rt.logger.child({ sessionId: session.id, clientIp, listener: this.#listener });
    const state: ConnectionState = {
      sessionId: session.id,
      listener: this.#listener,
      clientIp,
      openedAt: Date.now(),
      log,
      counted: false,
      messages: 0,
      rejections: 0,
    };
    this.#states.set(session.id, state);
    this.#rt.metrics.connectionsTotal.inc({ listener: this.#listener });
    if (this.#rt.draining) {
      state.closeReason = 'shutting_down';
      return callback(this.refuse(state, 'connect', 'SHUTTING_DOWN', { hostname }));
    }
    if (this.#open.count >= limits.maxConnections) {
      state.closeReason = 'too_many_connections';
      return callback(this.refuse(state, 'connect', 'TOO_MANY_CONNECTIONS', { hostname }));
    }
    const fromIp = this.#perIp.get(clientIp) ?? 0;
    if (fromIp >= limits.maxConnectionsPerIp) {
      state.closeReason = 'too_many_connections_ip';
      return callback(this.refuse(state, 'connect', 'TOO_MANY_CONNECTIONS_IP', { hostname }));
    }
    this.#open.count++;
    this.#perIp.set(clientIp, fromIp + 1);
    state.counted = true;
    this.#rt.metrics.connectionsOpen.inc({ listener: this.#listener });
    callback();
  };

  onClose = (session: SMTPServerSession): void => {
    const state = this.#states.get(session.id);
    if (!state) return;
    this.#states.delete(session.id);
    if (state.counted) {
      this.#open.count--;
      const left = (this.#perIp.get(state.clientIp) ?? 1) - 1;
      if (left > 0) this.#perIp.set(state.clientIp, left);
      else this.#perIp.delete(state.clientIp);
      this.#rt.metrics.connectionsOpen.dec({ listener: this.#listener });
    }
    state.log.info(
      {
        event: 'connection',
        user: state.user?.username,
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
    const state = this.#states.get(session.id);
    const username = auth.username ?? '';
    this.#rt.authenticator.authenticate(username, auth.password ?? '').then(
      (outcome) => {
        if (outcome.ok) {
          this.#rt.metrics.authTotal.inc({ result: 'success' });
          if (state) {
            state.user = outcome.user;
            state.log = state.log.child({ user: outcome.user.username });
            state.log.info({ event: 'auth', method: auth.method, result: 'success' }, 'authenticated');
          }
          return callback(null, { user: outcome.user.username });
        }
        const suspended = outcome.reason === 'auth_suspended';
        this.#rt.metrics.authTotal.inc({ result: suspended ? 'suspended' : 'failure' });
        callback(
          this.refuse(state, 'auth', suspended ? 'AUTH_SUSPENDED' : 'AUTH_FAILED', {}, { user: username }),
        );
      },
      (err: unknown) => {
        (state?.log ?? this.#rt.logger).error({ event: 'auth_error', err }, 'password verification failed');
        callback(this.refuse(state, 'auth', 'AUTH_TEMPFAIL', {}, { user: username }));
      },
    );
  };

  onMailFrom = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    const state = this.#states.get(session.id);
    if (!state?.user) return callback(this.refuse(state, 'mail', 'AUTH_REQUIRED'));
    // the users file may have changed since AUTH: a removed or suspended user stops here
    const user = this.#rt.users.get(state.user.username);
    if (!user || user.suspended) {
      return callback(this.refuse(state, 'mail', 'ACCOUNT_DISABLED', { user: state.user.username }));
    }
    state.user = user;
    const sender = address.address;
    if (!isSenderAllowed(sender, user.allowedSenders)) {
      return callback(
        this.refuse(state, 'mail', 'SENDER_NOT_ALLOWED', { sender, user: user.username }, { sender }),
      );
    }
    state.tx = { sender, recipients: [], dropped: 0 };
    callback();
  };

  onRcptTo = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    const state = this.#states.get(session.id);
    const tx = state?.tx;
    if (!state || !tx) return callback(this.refuse(state, 'rcpt', 'AUTH_REQUIRED'));
    const limits = this.#rt.config.limits;
    const rcpt = address.address;
    // smtp-server replaces a repeated RCPT in the envelope; count it once here too
    if (tx.recipients.some((r) => r.toLowerCase() === rcpt.toLowerCase())) return callback();
    switch (decideRecipient(tx.recipients.length, limits)) {
      case 'accept':
        tx.recipients.push(rcpt);
        this.#rt.metrics.recipientsTotal.inc({ result: 'accepted' });
        return callback();
      case 'drop':
        tx.dropped++;
        this.#rt.metrics.recipientsTotal.inc({ result: 'dropped' });
        return callback();
      case 'reject':
        this.#rt.metrics.recipientsTotal.inc({ result: 'rejected' });
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

  onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void => {
    const state = this.#states.get(session.id);
    if (!state?.user || !state.tx) {
      stream.resume();
      return callback(this.refuse(state, 'data', 'AUTH_REQUIRED'));
    }
    receiveMessage({
      rt: this.#rt,
      handlers: this,
      state,
      tx: state.tx,
      session,
      stream,
    }).then(
      (reply) => callback(null, reply),
      (err: Error) => callback(err),
    );
  };
}
