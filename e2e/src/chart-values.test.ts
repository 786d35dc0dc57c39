// What the chart renders for the options platform teams set: the ServiceMonitors a
// Prometheus operator selects (the chart's own and the relays' that the operator builds
// from the chart's settings), and the values schema refusing what it cannot render.
// Runs the real helm; skipped, with the build command, when it is not built.
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { describe, it } from 'node:test';
import { relayPolicy } from '../../operator/src/api/defaults.ts';
import { relayDefaultsFromEnv } from '../../operator/src/build/relay-defaults.ts';
import { serviceMonitor } from '../../operator/src/build/workload.ts';
import { binaryPaths } from './control-plane.ts';
import { CHART, findObject, operatorEnv, renderChart, runHelm, selects } from './helm-template.ts';

function helmMissing(): string | false {
  try {
    accessSync(binaryPaths().helm, constants.X_OK);
    return false;
  } catch {
    return `${binaryPaths().helm} is not built; run e2e/controlplane/build.sh`;
  }
}
const skip = helmMissing();

/** A stock kube-prometheus-stack installed as release "kps" selects ServiceMonitors with this. */
const KPS_SELECTOR = { release: 'kps' };

describe('chart values', { skip }, () => {
  it('labels both ServiceMonitors so that a stock kube-prometheus-stack selects them, at the interval asked', async () => {
    const docs = await renderChart([
      '--set',
      'metrics.serviceMonitor.enabled=true',
      '--set',
      'metrics.serviceMonitor.labels.release=kps',
      '--set',
      'metrics.serviceMonitor.interval=15s',
      '--set',
      'metrics.serviceMonitor.scrapeTimeout=10s',
    ]);
    const own = findObject(docs, 'ServiceMonitor', 'mail-operator');
    assert.ok(selects(KPS_SELECTOR, own.metadata.labels), 'the operator ServiceMonitor is selected');
    assert.deepEqual(own.spec.endpoints, [
      { port: 'admin', path: '/metrics', interval: '15s', scrapeTimeout: '10s' },
    ]);
    const service = findObject(docs, 'Service', 'mail-operator-metrics');
    assert.ok(
      selects(own.spec.selector.matchLabels, service.metadata.labels),
      'and it selects the metrics Service',
    );

    // the relays' ServiceMonitor, as the operator of this release builds it from its environment
    const settings = relayDefaultsFromEnv(operatorEnv(docs));
    const policy = relayPolicy(
      { name: 'outbound', namespace: 'mail', uid: 'u-1' },
      { hostname: 'relay.example.net' },
    );
    const relays = serviceMonitor(policy, settings.serviceMonitor) as {
      metadata: { labels: Record<string, string> };
      spec: { endpoints: Array<Record<string, unknown>> };
    };
    assert.ok(selects(KPS_SELECTOR, relays.metadata.labels), 'the relay ServiceMonitor is selected');
    assert.equal(relays.metadata.labels['app.kubernetes.io/instance'], 'outbound', 'its own labels stay');
    assert.deepEqual(relays.spec.endpoints, [
      {
        port: 'admin',
        path: '/metrics',
        interval: '15s',
        scrapeTimeout: '10s',
        relabelings: [
          {
            sourceLabels: ['__meta_kubernetes_service_label_app_kubernetes_io_instance'],
            targetLabel: 'policy',
          },
        ],
      },
    ]);

    const plain = relayDefaultsFromEnv(operatorEnv(await renderChart()));
    assert.deepEqual(plain.serviceMonitor, { labels: {}, interval: '30s' }, 'the defaults');
  });

  it('refuses a ServiceMonitor interval that is no duration, naming the field', async () => {
    await assert.rejects(
      runHelm(['template', 'mail', CHART, '--set', 'metrics.serviceMonitor.interval=soon']),
      /at '\/metrics\/serviceMonitor\/interval': 'soon' does not match pattern/,
    );
    await assert.rejects(
      runHelm(['template', 'mail', CHART, '--set-json', 'metrics.serviceMonitor.labels={"release":1}']),
      /at '\/metrics\/serviceMonitor\/labels\/release': got number, want string/,
    );
  });
});
