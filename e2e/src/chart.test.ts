// The chart's dashboard and alert rules: the rules pass `promtool check rules` and their
// unit tests (`promtool test rules`), the dashboard is valid Grafana JSON, every metric
// either of them names exists in the relay's or the operator's registry, and the chart
// lints and renders both with the toggles on. promtool and helm are built from Go modules
// into the cache (e2e/promtool/build.sh, e2e/controlplane/build.sh); a test whose binary
// is missing is skipped and says how to build it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { OperatorMetrics } from '@sluice/operator/metrics';
import { networkSettingsFromEnv } from '@sluice/operator/network-policy';
import { binaryPaths, cacheDir } from '@sluice/operator/testing/control-plane';
import { startTestRelay, type TestRelay } from '@sluice/relay/testing';
import { parse, parseAllDocuments } from 'yaml';

const execFileAsync = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHART = join(ROOT, 'charts', 'sluice');
const RULES = join(CHART, 'rules', 'sluice.rules.yaml');
const RULE_TESTS = join(CHART, 'rules', 'sluice.rules.test.yaml');
const DASHBOARD = join(CHART, 'dashboards', 'sluice.json');
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template
const DATASOURCE_VARIABLE = '${datasource}';

/** Where e2e/promtool/build.sh puts promtool: <cache>/bin/promtool-<version from its go.mod>. */
function promtoolPath(): string {
  const goMod = readFileSync(join(ROOT, 'e2e', 'promtool', 'go.mod'), 'utf8');
  const version = goMod.match(/^require github\.com\/prometheus\/prometheus (v\S+)/m)?.[1];
  if (version === undefined)
    throw new Error('e2e/promtool/go.mod does not require github.com/prometheus/prometheus');
  return join(cacheDir(), 'bin', `promtool-${version}`);
}

function skipUnless(path: string, build: string): string | false {
  try {
    accessSync(path, constants.X_OK);
    return false;
  } catch {
    const reason = `${path} is not built; run ${build}`;
    console.log(`# SKIP ${reason}`);
    return reason;
  }
}

const promtool = promtoolPath();
const helm = binaryPaths().helm;
const noPromtool = skipUnless(promtool, 'e2e/promtool/build.sh');
const noHelm = skipUnless(helm, 'e2e/controlplane/build.sh');

interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Array<{ refId?: string; expr?: string; datasource?: { uid?: string } }>;
}
interface Dashboard {
  uid?: string;
  title?: string;
  panels?: Panel[];
  templating?: { list?: Array<{ name: string; type: string }> };
}
interface RuleFile {
  groups: Array<{
    name: string;
    rules: Array<{ alert?: string; expr: string; annotations?: Record<string, string> }>;
  }>;
}

/** Metric names an expression uses (every sluice_ identifier and prom-client's process metrics). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(sluice|process|nodejs)_[a-z0-9_]+/g)].map((m) => m[0]);
}

/** docs/runbooks/<alert in kebab case>.md, as the alerts' runbook_url names it on GitHub. */
const RUNBOOK_BASE = 'https://github.com/sluice-dev/sluice/blob/main/docs/runbooks/';
function runbookFile(alert: string): string {
  return `${alert.replace(/(?<!^)([A-Z])/g, '-$1').toLowerCase()}.md`;
}

describe('chart dashboard and alert rules', () => {
  let relay: TestRelay;
  /** Metric name -> type, from a real relay's registry and the operator's. */
  const known = new Map<string, string>();
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;

  before(async () => {
    // The relay's registry as a running relay has it (process metrics included).
    relay = await startTestRelay({ defaultMetrics: true });
    const operator = new OperatorMetrics({ processMetrics: true });
    for (const registry of [relay.relay.metrics.registry, operator.registry]) {
      for (const m of await registry.getMetricsAsJSON()) known.set(m.name, String(m.type));
    }
  });
  after(() => relay?.close());

  /** Whether a name exists, a histogram's _bucket/_sum/_count series included. */
  function exists(name: string): boolean {
    if (known.has(name)) return true;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && known.get(base) === 'histogram';
  }

  it('has alert rules that promtool accepts and whose unit tests pass', { skip: noPromtool }, async () => {
    const checked = await execFileAsync(promtool, ['check', 'rules', RULES]);
    assert.match(checked.stdout, /SUCCESS: \d+ rules found/);
    const tested = await execFileAsync(promtool, ['test', 'rules', RULE_TESTS]);
    assert.match(tested.stdout, /SUCCESS/);
  });

  it('has every alert the SREs asked for, each with summary, description and a runbook_url to a runbook in the repository', () => {
    const alerts = rules.groups.flatMap((g) => g.rules);
    assert.deepEqual(alerts.map((r) => r.alert).sort(), [
      'SluiceAbuseSuspected',
      'SluiceAuthBruteForce',
      'SluiceConfigReloadRejected',
      'SluiceDeliveryFailureRatioHigh',
      'SluiceDnsblZoneDisabled',
      'SluiceOldMailInQueue',
      'SluiceOperatorNoLeader',
      'SluiceOperatorReconcileErrors',
      'SluiceOwnIpListed',
      'SluiceProviderThrottling',
      'SluiceQueueGrowing',
      'SluiceQueueQuarantined',
      'SluiceRelayDown',
      'SluiceSharedStateDown',
      'SluiceSpoolFull',
      'SluiceSpoolSlow',
      'SluiceSpoolSpaceLow',
    ]);
    for (const r of alerts) {
      for (const key of ['summary', 'description']) {
        const text = r.annotations?.[key] ?? '';
        assert.ok(text.length > 10, `${r.alert} has a ${key}`);
        assert.ok(!text.includes('\n'), `${r.alert}'s ${key} is one line`);
      }
      const alert = r.alert ?? '';
      assert.equal(r.annotations?.runbook_url, RUNBOOK_BASE + runbookFile(alert), `${alert}'s runbook_url`);
      const runbook = readFileSync(join(ROOT, 'docs', 'runbooks', runbookFile(alert)), 'utf8');
      assert.match(runbook, new RegExp(`^# ${alert}\n[\\s\\S]*## What to do\n`), `${alert}'s runbook`);
    }
  });

  it('names only metrics that the relay or the operator exports', () => {
    const used = [
      ...rules.groups.flatMap((g) => g.rules.flatMap((r) => metricNames(r.expr))),
      ...(dashboard.panels ?? []).flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr ?? ''))),
    ];
    assert.ok(used.length > 30, `found ${used.length} metric references`);
    const unknown = [...new Set(used.filter((name) => !exists(name)))];
    assert.deepEqual(unknown, [], `metrics in the chart that no registry has: ${unknown.join(', ')}`);
  });

  it('has a valid dashboard: datasource and expressions on every panel, unique ids, a 24-column grid', () => {
    assert.equal(dashboard.uid, 'sluice-overview');
    const variables = dashboard.templating?.list?.map((v) => `${v.name}:${v.type}`) ?? [];
    assert.ok(variables.includes('datasource:datasource'), 'a data source variable');
    const panels = dashboard.panels ?? [];
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    assert.ok(
      ids.every((id) => Number.isInteger(id)),
      'every panel has an id',
    );
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(g && g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${p.title} fits the grid`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, DATASOURCE_VARIABLE, `${p.title} has the datasource`);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has targets`);
      for (const t of p.targets ?? []) {
        assert.ok((t.expr ?? '').trim() !== '', `${p.title} target ${t.refId} has an expr`);
        assert.ok(t.refId, `${p.title} targets have refIds`);
      }
      const refIds = (p.targets ?? []).map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${p.title} refIds are unique`);
    }
    assert.ok(
      variables.includes('policy:query') && variables.includes('pod:query'),
      'policy and pod variables',
    );
    for (const t of panels.flatMap((p) => p.targets ?? [])) {
      const expr = t.expr ?? '';
      // every relay series is narrowed to the chosen policies and pods; the operator's are not theirs
      if (/\bsluice_operator_/.test(expr)) continue;
      for (const selector of expr.matchAll(/\b(?:sluice|process|nodejs)_[a-z0-9_]+\{([^}]*)\}/g))
        assert.match(selector[1] ?? '', /policy=~"\$policy",pod=~"\$pod"/, expr);
    }
    const titles = panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const row of [
      'Throughput',
      'Rejections',
      'Queue and delivery',
      'DNSBL',
      'Shared state (Redis)',
      'Saturation per pod',
      'Abuse and own IP',
      'Reputation and shaping',
      'Sender authentication',
    ]) {
      assert.ok(titles.includes(row), `a ${row} row`);
    }
  });

  describe('helm', { skip: noHelm }, () => {
    let home: string;
    const run = (args: string[]) =>
      execFileAsync(helm, args, {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          HELM_CACHE_HOME: join(home, 'cache'),
          HELM_CONFIG_HOME: join(home, 'config'),
          HELM_DATA_HOME: join(home, 'data'),
        },
        maxBuffer: 16 * 1024 * 1024,
      });
    before(async () => {
      home = await mkdtemp(join(tmpdir(), 'sluice-helm-'));
    });
    after(() => rm(home, { recursive: true, force: true }));

    it('lints strictly with the dashboard and the rules on', async () => {
      await run(['lint', '--strict', CHART]);
      await run([
        'lint',
        '--strict',
        CHART,
        '--set',
        'grafanaDashboard.enabled=true',
        '--set',
        'prometheusRule.enabled=true',
      ]);
    });

    it('renders the dashboard ConfigMap and the PrometheusRule from the files as they are', async () => {
      const { stdout } = await run([
        'template',
        'mail',
        CHART,
        '--namespace',
        'sluice-system',
        '--set',
        'grafanaDashboard.enabled=true',
        '--set',
        'prometheusRule.enabled=true',
        '--set',
        'prometheusRule.labels.release=prometheus',
      ]);
      type Doc = {
        kind?: string;
        metadata: { name?: string; labels: Record<string, string> };
        data: Record<string, string>;
        spec: unknown;
      };
      const docs = parseAllDocuments(stdout).map((d) => d.toJS() as Doc | null);
      const cm = docs.find((d) => d?.kind === 'ConfigMap' && d.metadata?.name === 'mail-sluice-dashboard');
      assert.ok(cm, 'the dashboard ConfigMap');
      assert.equal(cm.metadata.labels.grafana_dashboard, '1');
      assert.deepEqual(JSON.parse(cm.data['sluice.json'] ?? ''), dashboard);
      const rule = docs.find((d) => d?.kind === 'PrometheusRule');
      assert.ok(rule, 'the PrometheusRule');
      assert.equal(rule.metadata.labels.release, 'prometheus');
      assert.deepEqual(
        rule.spec,
        rules,
        'the rule file, embedded unchanged (no Helm templating of {{ $labels }})',
      );
      const off = await run(['template', 'mail', CHART]);
      assert.doesNotMatch(off.stdout, /PrometheusRule|sluice-dashboard/, 'both are off by default');
      assert.equal(await readFile(RULES, 'utf8').then((t) => t.includes('{{ $labels')), true);
    });

    it('fences the operator with a NetworkPolicy and has it fence the relays, unless turned off', async () => {
      type Doc = {
        kind?: string;
        metadata: { name?: string };
        spec: {
          podSelector?: unknown;
          policyTypes?: string[];
          ingress?: unknown[];
          egress?: unknown[];
          template?: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } };
        };
        rules?: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
      };
      const render = async (...set: string[]) => {
        const { stdout } = await run(['template', 'mail', CHART, '--namespace', 'sluice-system', ...set]);
        const docs = parseAllDocuments(stdout)
          .map((d) => d.toJS() as Doc | null)
          .filter((d): d is Doc => d !== null);
        const env = docs.find((d) => d.kind === 'Deployment')?.spec.template?.spec.containers[0]?.env ?? [];
        return {
          docs,
          policy: docs.find((d) => d.kind === 'NetworkPolicy'),
          env: Object.fromEntries(env.map((e) => [e.name, e.value])),
        };
      };

      const on = await render();
      assert.ok(on.policy, 'a NetworkPolicy by default');
      assert.equal(on.policy.metadata.name, 'mail-operator');
      assert.deepEqual(on.policy.spec.podSelector, {
        matchLabels: { 'app.kubernetes.io/name': 'sluice-operator', 'app.kubernetes.io/instance': 'mail' },
      });
      assert.deepEqual(on.policy.spec.policyTypes, ['Ingress', 'Egress']);
      assert.deepEqual(on.policy.spec.ingress, [
        {
          from: [
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
            {
              podSelector: {
                matchLabels: {
                  'app.kubernetes.io/instance': 'mail',
                  'app.kubernetes.io/component': 'chart-test',
                },
              },
            },
          ],
          ports: [{ protocol: 'TCP', port: 8080 }],
        },
      ]);
      assert.deepEqual(on.policy.spec.egress, [
        {
          ports: [
            { protocol: 'TCP', port: 443 },
            { protocol: 'TCP', port: 6443 },
          ],
        },
        {
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
        {
          to: [
            {
              namespaceSelector: {},
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'sluice-relay' } },
            },
          ],
          ports: [{ protocol: 'TCP', port: 9587 }],
        },
      ]);
      // what the operator reads to render each policy's relay NetworkPolicy
      assert.deepEqual(networkSettingsFromEnv(on.env), {
        podNetworks: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
        relayNetworkPolicy: {
          operatorNamespace: 'sluice-system',
          operatorPodLabels: {
            'app.kubernetes.io/name': 'sluice-operator',
            'app.kubernetes.io/instance': 'mail',
          },
          monitoringNamespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
        },
      });
      const role = on.docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'mail-operator');
      assert.deepEqual(
        role?.rules?.find((r) => r.resources.includes('networkpolicies')),
        {
          apiGroups: ['networking.k8s.io'],
          resources: ['networkpolicies'],
          verbs: ['get', 'create', 'patch', 'update', 'delete'],
        },
      );

      const custom = await render(
        '--set-json',
        'networkPolicy.monitoringNamespaceSelector={"matchLabels":{"team":"observability"}}',
        '--set-json',
        'networkPolicy.apiServer.cidrs=["172.20.0.1/32"]',
        '--set-json',
        'podNetworks=["10.244.0.0/16","fd00:10:244::/56"]',
        '--set-json',
        'networkPolicy.relayAdminFromCidrs=["172.20.0.1/32"]',
      );
      assert.deepEqual(custom.policy?.spec.ingress, [
        {
          from: [
            { namespaceSelector: { matchLabels: { team: 'observability' } } },
            {
              podSelector: {
                matchLabels: {
                  'app.kubernetes.io/instance': 'mail',
                  'app.kubernetes.io/component': 'chart-test',
                },
              },
            },
          ],
          ports: [{ protocol: 'TCP', port: 8080 }],
        },
      ]);
      assert.deepEqual((custom.policy?.spec.egress ?? [])[0], {
        ports: [
          { protocol: 'TCP', port: 443 },
          { protocol: 'TCP', port: 6443 },
        ],
        to: [{ ipBlock: { cidr: '172.20.0.1/32' } }],
      });
      const settings = networkSettingsFromEnv(custom.env);
      assert.deepEqual(settings.podNetworks, ['10.244.0.0/16', 'fd00:10:244::/56']);
      assert.deepEqual(settings.relayNetworkPolicy?.monitoringNamespaceSelector, {
        matchLabels: { team: 'observability' },
      });
      // the API server may reach the relays' admin port, for kubectl sluice through the pod proxy
      assert.deepEqual(settings.relayNetworkPolicy?.adminFromCidrs, ['172.20.0.1/32']);

      const off = await render('--set', 'networkPolicy.enabled=false');
      assert.equal(off.policy, undefined);
      assert.equal(networkSettingsFromEnv(off.env).relayNetworkPolicy, undefined, 'nor for the relays');
    });
  });
});
