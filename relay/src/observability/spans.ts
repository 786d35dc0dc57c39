// Span helpers for the relay's code paths (@opentelemetry/api only: without a registered
// SDK every span is a non-recording no-op). smtp-server calls the handlers from socket
// events, so the active context is never the session's: every span names its parent.
// Attributes carry ids, counts and results; never credentials, addresses of the message,
// its headers or its content.
import {
  type Attributes,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';

export type { Span, Tracer } from '@opentelemetry/api';
export { SpanKind } from '@opentelemetry/api';

export const TRACER_NAME = 'sluice-relay';

/** Attribute keys of Sluice's own; the rest are OpenTelemetry semantic conventions. */
export const ATTR = {
  sessionId: 'sluice.session_id',
  queueId: 'sluice.queue_id',
  listener: 'sluice.listener',
  user: 'sluice.user',
  result: 'sluice.result',
  reason: 'sluice.reason',
  stage: 'sluice.stage',
  recipients: 'sluice.recipients',
  sizeBytes: 'sluice.size_bytes',
  clientAddress: 'client.address',
  tlsVersion: 'tls.protocol.version',
  tlsCipher: 'tls.cipher',
} as const;

/** The relay's tracer from the global API (a proxy until an SDK is registered). */
export function relayTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

/**
 * Starts a span under parent, or a new trace when there is none. Kind by the conventions:
 * SERVER for a session a client opened, CLIENT for a connection the relay makes.
 */
export function startSpan(
  tracer: Tracer,
  name: string,
  parent: Span | undefined,
  attributes: Attributes = {},
  kind: SpanKind = SpanKind.INTERNAL,
): Span {
  const context = parent ? trace.setSpan(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
  return tracer.startSpan(name, { attributes, kind }, context);
}

/** trace_id and span_id of a recording span, for log lines that go with it; none for a no-op span. */
export function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string } {
  if (!span?.isRecording()) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/** Ends a span with its result; failed marks it as an error (the reason, never reply text). */
export function endSpan(span: Span, result: string, attributes: Attributes = {}, failed = false): void {
  // no SDK, or a trace not sampled: nothing to record, so no attributes to build
  if (!span.isRecording()) {
    span.end();
    return;
  }
  span.setAttributes({ ...attributes, [ATTR.result]: result });
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: result });
  span.end();
}

/** Runs fn inside a child span; a throw ends it as an error with the reason label when there is one. */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  parent: Span | undefined,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const span = startSpan(tracer, name, parent, attributes);
  try {
    return await fn(span);
  } catch (err: unknown) {
    // a reply's text can carry a file name from the message headers; the reason label cannot
    const reason = (err as { reason?: unknown }).reason;
    const label = typeof reason === 'string' ? reason : err instanceof Error ? err.name : 'error';
    span.setAttribute(ATTR.reason, label);
    span.setStatus({ code: SpanStatusCode.ERROR, message: label });
    throw err;
  } finally {
    span.end();
  }
}

/** Runs a check inside a child span and records what it decided (describe) as attributes. */
export function traced<T>(
  tracer: Tracer,
  name: string,
  parent: Span | undefined,
  attributes: Attributes,
  run: () => Promise<T>,
  describe: (value: T) => Attributes,
): Promise<T> {
  return inSpan(tracer, name, parent, attributes, async (span) => {
    const value = await run();
    if (span.isRecording()) span.setAttributes(describe(value));
    return value;
  });
}
