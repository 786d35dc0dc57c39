// OpenTelemetry SDK setup, for the relay and the operator (`@sluice/relay/tracing`).
// The code paths use @opentelemetry/api only, whose tracer is a
// no-op until a provider is registered; this module registers one, and only when there is
// somewhere to send spans (an OTLP endpoint, or an exporter a test passes). Otherwise the
// SDK modules are not even loaded: the imports are dynamic, inside startTracing.
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { SluiceError } from '../errors.ts';

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
  /** Further resource attributes (OTEL_RESOURCE_ATTRIBUTES: k8s.pod.name and the like). */
  resourceAttributes?: Record<string, string>;
  /** Which spans are kept (OTEL_TRACES_SAMPLER and _ARG); default parentbased_always_on. */
  sampler?: SamplerChoice;
}

export const SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export interface SamplerChoice {
  name: (typeof SAMPLERS)[number];
  /** The ratio of the traceidratio samplers, 0 to 1 (default 1). */
  ratio?: number;
}

/** A malformed OTEL_* variable: the message names it and the problem. */
const envError = (message: string) => new SluiceError('SLUICE_ERR_OTEL_ENV', message);

/**
 * The tracing options the OpenTelemetry environment variables ask for (the SDK
 * specification's names): OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT),
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (key=value pairs, values percent-encoded),
 * OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; OTEL_SDK_DISABLED=true turns it off.
 * The entry point passes its environment; throws naming a malformed variable.
 */
export function tracingOptionsFromEnv(
  env: Record<string, string | undefined>,
  defaultServiceName: string,
): TracingOptions {
  const resourceAttributes: Record<string, string> = {};
  for (const pair of (env.OTEL_RESOURCE_ATTRIBUTES ?? '').split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq).trim();
    if (eq <= 0 || key === '') throw envError(`OTEL_RESOURCE_ATTRIBUTES: "${pair.trim()}" is not key=value`);
    try {
      resourceAttributes[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw envError(`OTEL_RESOURCE_ATTRIBUTES: the value of ${key} is not percent-encoded`);
    }
  }
  const serviceName = env.OTEL_SERVICE_NAME || resourceAttributes['service.name'] || defaultServiceName;
  const endpoint =
    env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true'
      ? undefined
      : env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
  const options: TracingOptions = {
    serviceName,
    ...(endpoint ? { endpoint } : {}),
    ...(Object.keys(resourceAttributes).length > 0 ? { resourceAttributes } : {}),
  };
  const name = env.OTEL_TRACES_SAMPLER?.trim();
  if (!name) return options;
  if (!(SAMPLERS as readonly string[]).includes(name))
    throw envError(`OTEL_TRACES_SAMPLER: "${name}" is not one of ${SAMPLERS.join(', ')}`);
  const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  const ratio = arg ? Number(arg) : undefined;
  if (name.endsWith('traceidratio') && ratio !== undefined && !(ratio >= 0 && ratio <= 1))
    throw envError(`OTEL_TRACES_SAMPLER_ARG: "${arg}" is not a ratio from 0 to 1`);
  return {
    ...options,
    sampler: { name: name as SamplerChoice['name'], ...(ratio !== undefined ? { ratio } : {}) },
  };
}

type Sdk = typeof import('@opentelemetry/sdk-trace');

function buildSampler(sdk: Sdk, choice: SamplerChoice | undefined) {
  const ratio = () => new sdk.TraceIdRatioBasedSampler(choice?.ratio ?? 1);
  switch (choice?.name ?? 'parentbased_always_on') {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new sdk.ParentBasedSampler({ root: ratio() });
    default:
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
  }
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
      ...options.resourceAttributes,
      [semconv.ATTR_SERVICE_NAME]: options.serviceName,
      ...(options.serviceVersion ? { [semconv.ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
    }),
    sampler: buildSampler(sdk, options.sampler),
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
