// OpenTelemetry SDK setup for the operator (the relay has its own; the operator does not
// import relay internals). The reconcile code uses @opentelemetry/api only, a no-op until
// a provider is registered; this registers one only when there is somewhere to send spans,
// and loads the SDK modules only then (dynamic imports).
import type { SpanExporter } from '@opentelemetry/sdk-trace';

export interface TracingOptions {
  /** service.name of the resource ('sluice-operator'). */
  serviceName: string;
  /** OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT): spans go to `<endpoint>/v1/traces`. */
  endpoint?: string;
  /** An exporter of the caller's own (tests: InMemorySpanExporter); wins over endpoint. */
  exporter?: SpanExporter;
}

export interface Tracing {
  readonly enabled: boolean;
  /** Exports every finished span now. */
  flush(): Promise<void>;
  /** Flushes and unregisters; waits at most deadlineMs (5 s) for the collector. */
  shutdown(deadlineMs?: number): Promise<void>;
}

/** The OTLP/HTTP traces URL for an OTEL_EXPORTER_OTLP_ENDPOINT value (spec: append v1/traces). */
export function tracesUrl(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, '');
  return base.endsWith('/v1/traces') ? base : `${base}/v1/traces`;
}

export async function startTracing(options: TracingOptions): Promise<Tracing> {
  if (!options.exporter && !options.endpoint) {
    return { enabled: false, flush: async () => {}, shutdown: async () => {} };
  }
  const [api, sdk, asyncHooks, resources, semconv] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
  ]);
  let exporter = options.exporter;
  if (!exporter) {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    exporter = new OTLPTraceExporter({ url: tracesUrl(options.endpoint ?? '') });
  }
  const provider = new sdk.TracerProvider({
    resource: resources.resourceFromAttributes({ [semconv.ATTR_SERVICE_NAME]: options.serviceName }),
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter })],
  });
  api.context.setGlobalContextManager(new asyncHooks.AsyncLocalStorageContextManager().enable());
  api.trace.setGlobalTracerProvider(provider);
  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    flush: () => provider.forceFlush(),
    shutdown: (deadlineMs = 5000) => {
      stopped ??= provider.shutdown().finally(() => {
        api.trace.disable();
        api.context.disable();
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, deadlineMs);
        timer.unref();
      });
      return Promise.race([stopped, deadline]).finally(() => clearTimeout(timer));
    },
  };
}
