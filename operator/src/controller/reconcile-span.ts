// One `reconcile` span per key the work queue hands out: the kind, namespace and name, and
// what came of it (success with the number of objects changed, or error with the API's
// status). @opentelemetry/api only: without a registered SDK the span is a no-op. Error
// text from the API server can quote object contents, so only its status and reason go on
// the span.
import { ROOT_CONTEXT, type Span, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import { splitKey } from '../kube/resources.ts';

export const OPERATOR_TRACER_NAME = 'sluice-operator';

export function operatorTracer(): Tracer {
  return trace.getTracer(OPERATOR_TRACER_NAME);
}

interface Outcome {
  changed: number;
  statusWritten: boolean;
}

/** Runs one reconcile inside its span (a new trace, the active span for anything it calls). */
export function tracedReconcile<T extends Outcome>(
  tracer: Tracer,
  kind: string,
  key: string,
  reconcile: () => Promise<T>,
): Promise<T> {
  const { namespace, name } = splitKey(key);
  const attributes = { 'sluice.kind': kind, 'k8s.namespace.name': namespace, 'sluice.name': name };
  return tracer.startActiveSpan('reconcile', { attributes }, ROOT_CONTEXT, async (span: Span) => {
    try {
      const outcome = await reconcile();
      span.setAttributes({
        'sluice.result': 'success',
        'sluice.changed': outcome.changed,
        'sluice.status_written': outcome.statusWritten,
      });
      return outcome;
    } catch (err: unknown) {
      const e = err as { status?: unknown; reason?: unknown; name?: unknown };
      const reason = typeof e.reason === 'string' && e.reason ? e.reason : String(e.name ?? 'Error');
      span.setAttributes({
        'sluice.result': 'error',
        'sluice.error': reason,
        ...(typeof e.status === 'number' ? { 'http.response.status_code': e.status } : {}),
      });
      span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
      throw err;
    } finally {
      span.end();
    }
  });
}
