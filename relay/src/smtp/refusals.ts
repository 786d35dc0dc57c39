// The one place a refusal is recorded: every 4xx/5xx reply the SMTP front sends, whether a
// stage handler decided it or the connection did (smtp-server's own syntax and sequence
// replies), is counted in sluice_rejections_total, added to the session's count and the
// user's usage, and logged once as "rejected" with its reason.
import type { Logger } from '../observability/logger.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import type { Reason } from '../observability/reasons.ts';
import type { CheckOutcome } from '../policy/shared-checks.ts';
import type { UsageEvents } from '../usage/recorder.ts';
import type { ReplyObserver } from './connection.ts';
import { type ReplyKey, reject, type SmtpReplyError } from './replies.ts';
import type { ConnectionState } from './session-state.ts';

export type Stage = 'connect' | 'auth' | 'mail' | 'rcpt' | 'data' | 'session';

/** What recording a refusal needs from the relay (read on each use: a reload may swap them). */
export interface RefusalPort {
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  readonly usage?: UsageEvents | undefined;
}

export class RefusalRecorder implements ReplyObserver {
  readonly #port: RefusalPort;
  /** Open sessions of every listener, by session id. */
  readonly #sessions = new Map<string, ConnectionState>();

  constructor(port: RefusalPort) {
    this.#port = port;
  }

  opened(state: ConnectionState): void {
    this.#sessions.set(state.sessionId, state);
  }

  closed(sessionId: string): void {
    this.#sessions.delete(sessionId);
  }

  session(sessionId: string): ConnectionState | undefined {
    return this.#sessions.get(sessionId);
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
    this.#port.metrics.rejectionsTotal.inc({ reason: err.reason, stage });
    if (state) state.rejections++;
    if (state?.user) this.#port.usage?.rejected(state.user.username, err.reason, stage);
    (log ?? this.#port.logger).info(
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

  /** The refusal for a shared check that did not pass, or undefined. */
  checkRefusal(state: ConnectionState, stage: Stage, outcome: CheckOutcome): SmtpReplyError | undefined {
    switch (outcome.kind) {
      case 'ok':
        return undefined;
      case 'rate_limited':
        return this.refuse(state, stage, 'RATE_LIMITED', outcome.vars);
      case 'locked':
        return this.refuse(state, stage, 'AUTH_LOCKED_OUT', { retry: outcome.retry });
      case 'unavailable':
        return this.refuse(state, stage, 'STATE_TEMPFAIL');
    }
  }

  /** A refusal the connection sent without a stage handler (smtp-server's own, or the table's). */
  connectionRefusal(sessionId: string, code: number, reason: Reason, text: string): void {
    this.#port.metrics.rejectionsTotal.inc({ reason, stage: 'protocol' });
    const state = this.#sessions.get(sessionId);
    if (state) state.rejections++;
    (state?.log ?? this.#port.logger).info({
      event: 'rejected',
      reason,
      stage: 'protocol',
      reply: `${code} ${text}`,
    });
  }

  tooManyErrors(sessionId: string): void {
    const state = this.#sessions.get(sessionId);
    if (state) state.closeReason = 'too_many_errors';
  }
}
