// Reconcile spans: one per key, with kind, namespace, name and result. Against a real
// kube-apiserver (skipped, with the build command, when the control plane is not built),
// with the SDK registered by the operator's startTracing and an in-memory exporter; and
// the error path of the span on its own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { startTracing, type Tracing } from '@sluice/telemetry/tracing';
import { Controller } from '../src/controller/controller.ts';
import { operatorTracer, tracedReconcile } from '../src/controller/reconcile-span.ts';
import { KubeApiError } from '../src/kube/api-error.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../src/testing/api-server.ts';

const PASSWORD = 'correct horse battery staple';

describe('reconcile spans', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;

  before(async () => {
    tracing = await startTracing({ serviceName: 'sluice-operator-test', exporter });
  });
  after(() => tracing.shutdown());

  async function spans(what: string, match: (s: ReadableSpan) => boolean): Promise<ReadableSpan[]> {
    return waitFor(what, async () => {
      await tracing.flush();
      const found = exporter.getFinishedSpans().filter(match);
      return found.length > 0 ? found : undefined;
    });
  }

  it('marks a failed reconcile as an error with the API status, not its message', async () => {
    const failure = new KubeApiError(422, 'Invalid', `422 Invalid: data.password: ${PASSWORD}`);
    await assert.rejects(
      tracedReconcile(operatorTracer(), 'RelayPolicy', 'mail/broken', () => Promise.reject(failure)),
      failure,
    );
    const [span] = await spans('the error span', (s) => s.attributes['sluice.name'] === 'broken');
    assert.deepEqual(span?.attributes, {
      'sluice.kind': 'RelayPolicy',
      'k8s.namespace.name': 'mail',
      'sluice.name': 'broken',
      'sluice.result': 'error',
      'sluice.error': 'Invalid',
      'http.response.status_code': 422,
    });
    assert.equal(span?.status.message, 'Invalid');
  });

  describe('on a real API server', { skip: apiServerSkip(), timeout: 300_000 }, () => {
    let cp: ControlPlane;
    let admin: KubeClient;
    let controller: Controller;

    before(async () => {
      ({ cp, admin } = await startApiServer());
      controller = new Controller({
        client: new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'tracing-test' }),
        workers: 1,
      });
      controller.start();
    });
    after(async () => {
      await controller?.stop();
      await cp?.stop();
    });

    it('traces each reconcile of a RelayPolicy with its key and result', async () => {
      const ns = 'traced';
      await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      await admin.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'alice-pw', namespace: ns },
        stringData: { password: PASSWORD },
      } as KubeObject);
      await admin.create({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'RelayPolicy',
        metadata: { name: 'mail', namespace: ns },
        spec: { hostname: 'relay.example.net' },
      } as KubeObject);
      await admin.create({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'SmtpUser',
        metadata: { name: 'alice', namespace: ns },
        spec: { username: 'alice', policyRef: { name: 'mail' }, passwordSecretRef: { name: 'alice-pw' } },
      } as KubeObject);

      const reconciles = await spans(
        'a reconcile that applied the objects',
        (s) =>
          s.name === 'reconcile' &&
          s.attributes['k8s.namespace.name'] === ns &&
          Number(s.attributes['sluice.changed']) > 0,
      );
      const span = reconciles[0];
      assert.equal(span?.attributes['sluice.kind'], 'RelayPolicy');
      assert.equal(span?.attributes['sluice.name'], 'mail');
      assert.equal(span?.attributes['sluice.result'], 'success');
      assert.equal(span?.parentSpanContext, undefined, 'each reconcile is a trace of its own');
      const text = JSON.stringify(exporter.getFinishedSpans().map((s) => [s.attributes, s.status]));
      assert.ok(!text.includes(PASSWORD), 'no password in any span');
    });
  });
});
