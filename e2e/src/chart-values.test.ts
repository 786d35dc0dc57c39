// What the chart renders for the options platform teams set: the ServiceMonitors a
// Prometheus operator selects (the chart's own and the relays' that the operator builds
// from the chart's settings), pod options, aggregated roles, the chart test, the example
// values in ci/, and the values schema refusing what it cannot render, naming the field.
// Runs the real helm; skipped, with the build command, when it is not built.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startAdminServer } from '@sluice/operator/admin-server';
import { relayPolicy } from '@sluice/operator/api-defaults';
import { OperatorMetrics } from '@sluice/operator/metrics';
import { relayDefaultsFromEnv } from '@sluice/operator/relay-defaults';
import { binaryPaths } from '@sluice/operator/testing/control-plane';
import { OPERATOR_VERSION } from '@sluice/operator/version';
import { serviceMonitor, statefulSet } from '@sluice/operator/workload';
import { CHART, findObject, operatorEnv, renderChart, runHelm, selects } from './helm-template.ts';

const execFileAsync = promisify(execFile);
const EXAMPLES = join(CHART, 'ci');

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

  it("keeps the operator's young generation to the semi-spaces asked, beside the heap share", async () => {
    // Node with the rendered NODE_OPTIONS, making garbage as a cold start does: left to V8,
    // the new space grows to 128 MiB, outside the heap share, and a 512Mi operator is killed
    const newSpace = async (nodeOptions: string) => {
      const { stdout } = await execFileAsync(
        process.execPath,
        [
          '-e',
          `const v8 = require('node:v8');
           let kept = [];
           for (let i = 0; i < 3e6; i++) { kept.push({ i, s: 'x' + i }); if (kept.length > 2e5) kept = kept.slice(1e5); }
           const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
           process.stdout.write(String(s.space_size));`,
        ],
        { env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: nodeOptions } },
      );
      return Number(stdout) / 2 ** 20;
    };
    const options = operatorEnv(await renderChart()).NODE_OPTIONS ?? '';
    assert.match(options, /--max-old-space-size-percentage=75\b/);
    assert.match(options, /--max-semi-space-size=16\b/);
    assert.ok((await newSpace(options)) <= 48, 'two 16 MiB semi-spaces (and a page or so)');
    // and the same heap without the flag, which is what it prevents
    assert.ok((await newSpace('--max-old-space-size=387')) >= 64, 'V8 left alone grows the new space');

    const small = operatorEnv(await renderChart(['--set', 'operator.semiSpaceMiB=8'])).NODE_OPTIONS ?? '';
    assert.match(small, /--max-semi-space-size=8\b/);
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

  it('renders and lints every example in ci/ under the values schema', async () => {
    const examples = readdirSync(EXAMPLES).filter((f) => f.endsWith('-values.yaml'));
    assert.ok(examples.length >= 4, `examples: ${examples.join(', ')}`);
    for (const file of examples) {
      await runHelm(['lint', '--strict', CHART, '--values', join(EXAMPLES, file)]);
      const docs = await renderChart(['--values', join(EXAMPLES, file)]);
      assert.ok(findObject(docs, 'Deployment'), file);
    }
  });

  it('refuses values it cannot render, naming the field and the problem', async () => {
    const refusals: Array<[string[], RegExp]> = [
      [['--set-json', 'imagePullSecrets=["regcred"]'], /at '\/imagePullSecrets\/0': got string, want object/],
      [
        ['--set-json', 'operator.extraEnv=[{"value":"x"}]'],
        /at '\/operator\/extraEnv\/0': missing property 'name'/,
      ],
      [['--set', 'relay.runAsUser=0'], /at '\/relay\/runAsUser': minimum: got 0, want 1/],
      [
        ['--set-json', 'rbac.aggregateToStandardRoles.editResources=["secrets"]'],
        /at '\/rbac\/aggregateToStandardRoles\/editResources\/0': value must be one of/,
      ],
      [['--set', 'nameOverride=Bad_Name'], /at '\/nameOverride': 'Bad_Name' does not match pattern/],
      [
        ['--set', 'operator.podAnnotationz.a=b'],
        /at '\/operator': additional properties 'podAnnotationz' not allowed/,
      ],
    ];
    for (const [args, message] of refusals) {
      await assert.rejects(runHelm(['template', 'mail', CHART, ...args]), message, args.join(' '));
    }
  });

  it('puts pull secrets, pod annotations and labels, the priority class, extra env and names where the pods get them', async () => {
    const docs = await renderChart(['--values', join(EXAMPLES, 'private-registry-values.yaml')]);
    const deployment = findObject(docs, 'Deployment', 'sluice');
    const pod = deployment.spec.template;
    assert.deepEqual(pod.spec.imagePullSecrets, [{ name: 'regcred' }]);
    assert.equal(pod.spec.priorityClassName, 'platform-critical');
    assert.deepEqual(pod.metadata.annotations, { 'prometheus.io/scrape': 'false' });
    assert.equal(pod.metadata.labels.team, 'mail');
    assert.deepEqual(
      deployment.spec.selector.matchLabels,
      {
        'app.kubernetes.io/name': 'sluice-operator',
        'app.kubernetes.io/instance': 'mail',
      },
      'the selector does not move with the names',
    );
    assert.equal(
      pod.spec.containers[0].image,
      `registry.example.com/mirror/sluice-operator:${OPERATOR_VERSION}`,
    );
    const env = operatorEnv(docs);
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector.monitoring:4318');
    assert.equal(
      env.OTEL_RESOURCE_ATTRIBUTES,
      'k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(LEASE_NAMESPACE),k8s.node.name=$(NODE_NAME),k8s.deployment.name=sluice',
    );
    assert.equal(
      relayDefaultsFromEnv(env).image,
      `registry.example.com/mirror/sluice-relay:${OPERATOR_VERSION}`,
    );
    const relayPod = statefulSet(
      relayPolicy({ name: 'outbound', namespace: 'mail' }, { hostname: 'relay.example.net' }),
      'h',
      undefined,
      undefined,
      relayDefaultsFromEnv(env),
    ).spec?.template.spec;
    assert.deepEqual(relayPod?.imagePullSecrets, [{ name: 'regcred' }], 'the relay pods pull with it too');
    assert.equal(
      relayPod?.containers[0]?.image,
      `registry.example.com/mirror/sluice-relay:${OPERATOR_VERSION}`,
    );
    assert.ok(findObject(docs, 'Service', 'sluice-metrics'));
    assert.ok(findObject(docs, 'ClusterRole', 'sluice'));
    const test = findObject(docs, 'Pod', 'sluice-test');
    assert.deepEqual(test.spec.imagePullSecrets, [{ name: 'regcred' }]);

    const renamed = await renderChart(['--set', 'nameOverride=smtp']);
    assert.ok(findObject(renamed, 'Deployment', 'mail-smtp'));
  });

  it('leaves UIDs to the platform on OpenShift, and gives relay pods no API token', async () => {
    const docs = await renderChart(['--values', join(EXAMPLES, 'openshift-values.yaml')]);
    const podSecurity = findObject(docs, 'Deployment').spec.template.spec.securityContext;
    assert.deepEqual(podSecurity, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const policy = relayPolicy({ name: 'outbound', namespace: 'mail' }, { hostname: 'relay.example.net' });
    const onOpenShift = statefulSet(
      policy,
      'h',
      undefined,
      undefined,
      relayDefaultsFromEnv(operatorEnv(docs)),
    ).spec?.template.spec;
    assert.equal(onOpenShift?.securityContext?.runAsUser, undefined);
    assert.equal(onOpenShift?.securityContext?.fsGroup, undefined);
    assert.equal(onOpenShift?.securityContext?.runAsNonRoot, true);
    assert.equal(onOpenShift?.automountServiceAccountToken, false);
    const plain = statefulSet(
      policy,
      'h',
      undefined,
      undefined,
      relayDefaultsFromEnv(operatorEnv(await renderChart())),
    ).spec?.template.spec;
    assert.equal(plain?.securityContext?.runAsUser, 10001);
    assert.equal(plain?.automountServiceAccountToken, false);
    const custom = relayDefaultsFromEnv(
      operatorEnv(await renderChart(['--set', 'relay.runAsUser=1000700000'])),
    );
    assert.equal(custom.runAsUser, 1000700000);
  });

  it('aggregates SmtpUser rights into the standard edit and admin roles, and reading into view', async () => {
    const docs = await renderChart();
    const edit = findObject(docs, 'ClusterRole', 'mail-operator-edit');
    assert.equal(edit.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit'], 'true');
    assert.equal(edit.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-admin'], 'true');
    assert.deepEqual(edit.rules, [
      {
        apiGroups: ['sluice.dev'],
        resources: ['smtpusers'],
        verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'],
      },
    ]);
    const view = findObject(docs, 'ClusterRole', 'mail-operator-view');
    assert.equal(view.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-view'], 'true');
    assert.deepEqual(view.rules[0].verbs, ['get', 'list', 'watch']);
    const wider = await renderChart(['--values', join(EXAMPLES, 'namespaced-values.yaml')]);
    assert.deepEqual(findObject(wider, 'ClusterRole', 'mail-operator-edit').rules[0].resources, [
      'smtpusers',
      'relaypolicies',
    ]);
    const off = await renderChart(['--set', 'rbac.aggregateToStandardRoles.enabled=false']);
    assert.equal(
      off.filter((d) => d.metadata.name.endsWith('-edit') || d.metadata.name.endsWith('-view')).length,
      0,
    );
  });

  it('has a helm test whose pod passes against a ready operator and fails against one that is not', async () => {
    const docs = await renderChart();
    const pod = findObject(docs, 'Pod', 'mail-operator-test');
    assert.equal(pod.metadata.annotations?.['helm.sh/hook'], 'test');
    assert.equal(pod.spec.automountServiceAccountToken, false);
    const container = pod.spec.containers[0] as {
      image: string;
      command: string[];
      env: Array<{ name: string; value: string }>;
    };
    assert.equal(container.image, `ghcr.io/sluice-dev/operator:${OPERATOR_VERSION}`);
    assert.deepEqual(container.env, [
      { name: 'READYZ_URL', value: 'http://mail-operator-metrics.sluice-system.svc:8080/readyz' },
    ]);
    // the operator's NetworkPolicy lets the test pod in
    const ingress = findObject(docs, 'NetworkPolicy').spec.ingress[0].from as Array<Record<string, unknown>>;
    const testPeer = ingress.find((peer) => 'podSelector' in peer) as
      | { podSelector: { matchLabels: Record<string, string> } }
      | undefined;
    assert.ok(
      testPeer && selects(testPeer.podSelector.matchLabels, pod.metadata.labels),
      'the test pod may reach it',
    );
    // the container's command, run here (the image's node is this node) against a real admin server
    let ready = true;
    const admin = await startAdminServer({
      port: 0,
      host: '127.0.0.1',
      registry: new OperatorMetrics().registry,
      readiness: () => ({ ok: ready, detail: ready ? 'leading' : 'no informers yet' }),
    });
    try {
      const [node, ...args] = container.command;
      assert.equal(node, 'node');
      const run = () =>
        execFileAsync(process.execPath, args, {
          env: { READYZ_URL: `http://127.0.0.1:${admin.port}/readyz` },
        });
      assert.match((await run()).stdout, /^200 /);
      ready = false;
      await assert.rejects(run(), (err: { code?: number; stdout?: string }) => {
        assert.equal(err.code, 1);
        assert.match(err.stdout ?? '', /^503 /);
        return true;
      });
    } finally {
      await admin.close();
    }
  });
});
