// OpenTelemetry SDK setup, for the relay and the operator (`@sluice/relay/tracing`).
// The code paths use @opentelemetry/api only, whose tracer is a
// no-op until a provider is registered; this module registers one, and only when there is
// somewhere to send spans (an OTLP endpoint, or an exporter a test passes). Otherwise the
// SDK modules are not even loaded: the imports are dynamic, inside startTracing.
import type { SpanExporter } from '@opentelemetry/sdk-trace';

export interface TracingOptions {
  /** service.name of the resource ('sluice-relay'). */
  serviceName: string;
  serviceVersion?: string;
  /**
   * OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT): spans go to `<endpoint>/v1/traces`.
   * An endpoint that already ends in /v1/traces is used as it is.
   */
  endpoint?: string;
  /** An exporter of the caller's own (tests: InMemorySpanExporter); wins over endpoint. */
  exporter?: SpanExporter;
  /** How long the batch processor waits before it exports (5000 ms). */
  scheduledDelayMillis?: number;
}

export interface Tracing {
  /** False when nothing was registered (no endpoint, no exporter). */
  readonly enabled: boolean;
  /** Exports every finished span now. */
  flush(): Promise<void>;
  /**
   * Flushes, then unregisters the provider (the API is a no-op again). Waits at most
   * deadlineMs (5 s) for a collector that does not answer: a stopping pod must not hang.
   */
  shutdown(deadlineMs?: number): Promise<void>;
}

const DISABLED: Tracing = {
  enabled: false,
  flush: async () => {},
  shutdown: async () => {},
};

/** The OTLP/HTTP traces URL for an OTEL_EXPORTER_OTLP_ENDPOINT value (spec: append v1/traces). */
export function tracesUrl(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, '');
  return base.endsWith('/v1/traces') ? base : `${base}/v1/traces`;
}

export async function startTracing(options: TracingOptions): Promise<Tracing> {
  if (!options.exporter && !options.endpoint) return DISABLED;
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
    resource: resources.resourceFromAttributes({
      [semconv.ATTR_SERVICE_NAME]: options.serviceName,
      ...(options.serviceVersion ? { [semconv.ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
    }),
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter,
        ...(options.scheduledDelayMillis === undefined
          ? {}
          : { scheduledDelayMillis: options.scheduledDelayMillis }),
      }),
    ],
  });
  const contextManager = new asyncHooks.AsyncLocalStorageContextManager().enable();
  api.context.setGlobalContextManager(contextManager);
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
