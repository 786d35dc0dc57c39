// The AUTH stage: the lockout, the password, then what policy/auth-decision.ts makes of it;
// failures count towards the lockout, and with dnsbl.checkAt auth the DNSBL lookup starts
// here (MAIL FROM enforces it). The username goes on the span only once it authenticated:
// a failed one may be a mistyped password.
import type { Authenticator } from '../../auth/authenticator.ts';
import type { RelayConfig, UserRecord } from '../../config/schema.ts';
import type { Logger } from '../../observability/logger.ts';
import type { RelayMetrics } from '../../observability/metrics.ts';
import { ATTR, inSpan, type Tracer } from '../../observability/spans.ts';
import { decideAuth } from '../../policy/auth-decision.ts';
import { handoffFromOutside } from '../../policy/handoff-origin.ts';
import type { SharedChecks } from '../../policy/shared-checks.ts';
import type { UsageEvents } from '../../usage/recorder.ts';
import { authUserFields } from '../auth-log.ts';
import type { RefusalRecorder } from '../refusals.ts';
import type { SmtpReplyError } from '../replies.ts';
import type { ConnectionState } from '../session-state.ts';
import { type DnsblLookupPort, dnsblVerdict } from './stage.ts';

export interface AuthPort extends DnsblLookupPort {
  readonly config: Pick<RelayConfig, 'dnsbl' | 'drain'>;
  readonly checks: Pick<SharedChecks, 'authLocked' | 'recordAuthFailure' | 'dnsblEnabled' | 'dnsblVerdict'>;
  readonly authenticator: Pick<Authenticator, 'authenticate'>;
  readonly users: ReadonlyMap<string, UserRecord>;
  /** Users suspended by abuse detection (abuse.autoSuspend), refused like suspended ones. */
  readonly abuse?: { isSuspended(user: string): boolean } | undefined;
  readonly metrics: Pick<RelayMetrics, 'authTotal'>;
  readonly logger: Logger;
  readonly tracer: Tracer;
  readonly usage?: Pick<UsageEvents, 'authenticated'> | undefined;
}

export interface AuthAttempt {
  username: string;
  password: string;
  method: string;
}

export class AuthStage {
  readonly #port: AuthPort;
  readonly #refusals: RefusalRecorder;

  constructor(port: AuthPort, refusals: RefusalRecorder) {
    this.#port = port;
    this.#refusals = refusals;
  }

  /** Resolves to the refusal, or undefined once the client is authenticated as attempt.username. */
  auth(state: ConnectionState | undefined, attempt: AuthAttempt): Promise<SmtpReplyError | undefined> {
    const port = this.#port;
    const { username } = attempt;
    const userFields = authUserFields(username, port.users.has(username));
    return inSpan(
      port.tracer,
      'smtp.auth',
      state?.span,
      { 'sluice.auth.method': attempt.method },
      async (span) => {
        const refusal = await this.#authenticate(state, attempt, userFields);
        span.setAttribute(ATTR.result, authResult(refusal));
        if (!refusal) {
          span.setAttribute(ATTR.user, username);
          state?.span.setAttribute(ATTR.user, username);
        }
        return refusal;
      },
    ).then(
      (refusal) => refusal,
      (err: unknown) => {
        (state?.log ?? port.logger).error({ event: 'auth_error', err }, 'password verification failed');
        return this.#refusals.refuse(state, 'auth', 'AUTH_TEMPFAIL', {}, userFields);
      },
    );
  }

  /** Lockout check, password check, failure counting; the refusal or undefined on success. */
  async #authenticate(
    state: ConnectionState | undefined,
    { username, password, method }: AuthAttempt,
    userFields: Record<string, string>,
  ): Promise<SmtpReplyError | undefined> {
    const port = this.#port;
    const ip = state?.clientIp ?? '';
    const log = state?.log ?? port.logger;
    const lock = await port.checks.authLocked(username, ip);
    if (lock.kind === 'locked' || lock.kind === 'unavailable') {
      port.metrics.authTotal.inc({ result: 'locked' });
      return state
        ? this.#refusals.checkRefusal(state, 'auth', lock)
        : this.#refusals.refuse(state, 'auth', 'AUTH_TEMPFAIL', {}, userFields);
    }
    // the decision comes after the password check, so a refusal takes as long as any wrong password
    const checked = await port.authenticator.authenticate(username, password);
    const decision = decideAuth({
      checked,
      handoffFromOutside: handoffFromOutside(port.config, username, ip),
      abuseSuspended: checked.ok && (port.abuse?.isSuspended(checked.user.username) ?? false),
    });
    if (decision.kind === 'refuse') {
      port.metrics.authTotal.inc({ result: decision.result });
      if (decision.cause === 'handoff_from_outside') {
        log.warn(
          { event: 'handoff_auth_refused', ...userFields, clientIp: ip },
          'AUTH as the handoff account from outside drain.handoff.fromNetworks',
        );
      }
      if (decision.countsFailure) await port.checks.recordAuthFailure(username, ip, log, userFields);
      const fields = decision.cause === 'abuse' ? { ...userFields, abuse: true } : userFields;
      return this.#refusals.refuse(state, 'auth', decision.refusal, {}, fields);
    }
    const { user } = decision;
    port.metrics.authTotal.inc({ result: 'success' });
    if (state) {
      port.usage?.authenticated(user.username, state.clientIp);
      state.user = user;
      state.log = state.log.child({ user: user.username });
      state.log.info({ event: 'auth', method, result: 'success' }, 'authenticated');
      if (port.config.dnsbl.checkAt === 'auth') {
        state.dnsbl = dnsblVerdict(port, state, 'auth');
        state.dnsbl.catch(() => undefined);
      }
    }
    return undefined;
  }
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
