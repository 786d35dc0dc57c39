// The SDK setup on its own: what the OTEL_* variables ask for, what the registered SDK then
// makes of them (resource attributes, sampling) with an in-memory exporter, and the OTLP URL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { startTracing, TracingEnvError, tracesUrl, tracingOptionsFromEnv } from './tracing.ts';

describe('startTracing', () => {
  it('registers nothing without an endpoint or exporter', async () => {
    const tracing = await startTracing({ serviceName: 'x' });
    assert.equal(tracing.enabled, false);
    await tracing.shutdown();
  });

  it('honours the OTEL_* variables: resource attributes, service name, sampler, and names a malformed one', async () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_RESOURCE_ATTRIBUTES:
        'k8s.pod.name=mail-relay-0,k8s.namespace.name=mail,deployment.environment=prod%2Ceu,service.name=ignored',
      OTEL_SERVICE_NAME: 'relay-eu',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
    };
    const options = tracingOptionsFromEnv(env, 'sluice-relay');
    assert.deepEqual(options, {
      serviceName: 'relay-eu',
      endpoint: 'http://collector:4318',
      resourceAttributes: {
        'k8s.pod.name': 'mail-relay-0',
        'k8s.namespace.name': 'mail',
        'deployment.environment': 'prod,eu',
        'service.name': 'ignored',
      },
      sampler: { name: 'parentbased_traceidratio', ratio: 0 },
    });
    assert.equal(tracingOptionsFromEnv({ ...env, OTEL_SDK_DISABLED: 'true' }, 'x').endpoint, undefined);
    // the code is the one the relay's error catalogue documents
    const malformed = (pattern: RegExp) => (err: unknown) =>
      err instanceof TracingEnvError && err.code === 'SLUICE_ERR_OTEL_ENV' && pattern.test(err.message);
    assert.throws(
      () => tracingOptionsFromEnv({ OTEL_TRACES_SAMPLER: 'sometimes' }, 'x'),
      malformed(/OTEL_TRACES_SAMPLER: "sometimes" is not one of always_on, always_off/),
    );
    assert.throws(
      () => tracingOptionsFromEnv({ OTEL_RESOURCE_ATTRIBUTES: 'k8s.pod.name' }, 'x'),
      malformed(/OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name" is not key=value/),
    );

    // what the SDK then makes of them: the attributes on the resource, the ratio 0 sampling nothing
    const exporter = new InMemorySpanExporter();
    const sampledOut = await startTracing({ ...options, exporter });
    try {
      const { trace } = await import('@opentelemetry/api');
      trace.getTracer('t').startSpan('dropped').end();
      await sampledOut.flush();
      assert.deepEqual(exporter.getFinishedSpans(), []);
    } finally {
      await sampledOut.shutdown();
    }
    const keptExporter = new InMemorySpanExporter();
    const kept = await startTracing({ ...options, sampler: { name: 'always_on' }, exporter: keptExporter });
    try {
      const { trace } = await import('@opentelemetry/api');
      trace.getTracer('t').startSpan('kept').end();
      await kept.flush();
      const [span] = keptExporter.getFinishedSpans();
      assert.equal(span?.resource.attributes['k8s.pod.name'], 'mail-relay-0');
      assert.equal(span?.resource.attributes['service.name'], 'relay-eu');
    } finally {
      await kept.shutdown();
    }
  });

  it('sends to <endpoint>/v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT means', () => {
    assert.equal(tracesUrl('http://collector:4318'), 'http://collector:4318/v1/traces');
    assert.equal(tracesUrl('http://collector:4318/'), 'http://collector:4318/v1/traces');
    assert.equal(tracesUrl('http://collector:4318/v1/traces'), 'http://collector:4318/v1/traces');
  });
});
