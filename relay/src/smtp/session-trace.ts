// The spans of one SMTP connection: smtp.session from connect to close, and one
// smtp.transaction per MAIL FROM, ended at the end of DATA, at a refusal, or as
// "abandoned" when the client starts over or leaves before DATA. What the checks decided
// becomes attributes; a refusal is a result, not a span error (the relay did its job).
import type { Attributes } from '@opentelemetry/api';
import type { DnsblVerdict } from '../dnsbl/checker.ts';
import { ATTR, endSpan, startSpan, type Tracer } from '../observability/spans.ts';
import type { CheckOutcome } from '../policy/shared-checks.ts';
import type { SmtpReplyError } from './replies.ts';
import type { ConnectionState } from './session-state.ts';

/** Opens the transaction span under the session (ending one left open by the client). */
export function startTransaction(tracer: Tracer, state: ConnectionState): void {
  endTransaction(state, 'abandoned');
  state.txSpan = startSpan(tracer, 'smtp.transaction', state.span, { [ATTR.sessionId]: state.sessionId });
}

export function endTransaction(state: ConnectionState, result: string, attributes: Attributes = {}): void {
  const span = state.txSpan;
  if (!span) return;
  state.txSpan = undefined;
  endSpan(span, result, attributes);
}

/** Ends the open transaction with a refusal: rejected (5xx) or tempfail (4xx), and its reason label. */
export function refuseTransaction(
  state: ConnectionState,
  err: SmtpReplyError,
  attributes: Attributes = {},
): void {
  endTransaction(state, err.responseCode >= 500 ? 'rejected' : 'tempfail', {
    ...attributes,
    [ATTR.reason]: err.reason,
  });
}

/** Ends the open transaction after a failure: a refusal with its reason, anything else as `otherwise`. */
export function failTransaction(
  state: ConnectionState,
  err: unknown,
  otherwise: string,
  attributes: Attributes = {},
): void {
  if ((err as SmtpReplyError | undefined)?.responseCode)
    refuseTransaction(state, err as SmtpReplyError, attributes);
  else endTransaction(state, otherwise, attributes);
}

export function endSession(state: ConnectionState, tls: boolean): void {
  endTransaction(state, 'abandoned');
  endSpan(state.span, 'closed', {
    'sluice.messages': state.messages,
    'sluice.rejections': state.rejections,
    'sluice.tls': tls,
    ...(state.closeReason ? { [ATTR.reason]: state.closeReason } : {}),
  });
}

/** A shared check's decision (ok, rate_limited, locked, unavailable) with what was limited. */
export function describeCheck(outcome: CheckOutcome): Attributes {
  if (outcome.kind !== 'rate_limited') return { [ATTR.result]: outcome.kind };
  const { what, scope, window } = outcome.vars;
  return {
    [ATTR.result]: outcome.kind,
    'sluice.ratelimit.what': String(what),
    'sluice.ratelimit.scope': String(scope),
    'sluice.ratelimit.window': String(window),
  };
}

/** A DNSBL verdict: listed (with the zones), failed (zones that did not answer) or clear. */
export function describeDnsbl(verdict: DnsblVerdict | undefined): Attributes {
  if (!verdict) return { [ATTR.result]: 'off' };
  const listed = verdict.listed.map((hit) => hit.zone);
  const failed = verdict.failed.map((f) => f.zone);
  return {
    [ATTR.result]: listed.length > 0 ? 'listed' : failed.length > 0 ? 'failed' : 'clear',
    ...(listed.length > 0 ? { 'sluice.dnsbl.listed_zones': listed } : {}),
    ...(failed.length > 0 ? { 'sluice.dnsbl.failed_zones': failed } : {}),
  };
}
