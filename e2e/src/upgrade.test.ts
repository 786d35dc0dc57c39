// Upgrading Sluice on a real API server (and etcd): from the CRDs of release 0.1.0, as
// its chart installed them, through the documented step (Helm never upgrades crds/:
// `kubectl apply --server-side --force-conflicts -f charts/sluice/crds/`), to an
// operator of a newer release. Policies that never chose an image follow the operator's
// release (also those the 0.1.0 CRD's default wrote an image into); a pinned one stays;
// status says which release reconciled and which image the pods are given. No kubelet
// runs here: the StatefulSets' pod templates are what the test reads (the node tier
// rolls pods).
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RelayPolicy } from '@sluice/operator/api-types';
import { Controller } from '@sluice/operator/controller';
import { KubeClient, type KubeObject, loadKubeConfig } from '@sluice/operator/kube-client';
import { relayDefaultsFromEnv } from '@sluice/operator/relay-defaults';
import {
  type ControlPlane,
  skipUnlessBuilt,
  startControlPlane,
} from '@sluice/operator/testing/control-plane';
import { OPERATOR_VERSION } from '@sluice/operator/version';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { helm } from './helm.ts';
import { CHART, operatorEnv, renderChart } from './helm-template.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PREVIOUS_CRDS = join(ROOT, 'e2e', 'fixtures', 'crds-0.1.0');
const CHART_CRDS = join(ROOT, 'charts', 'sluice', 'crds');
const NS = 'mail';

const skip = skipUnlessBuilt(['kube-apiserver', 'etcd', 'kubectl', 'helm']);
if (skip) console.log(`# SKIP upgrade: ${skip}`);

interface StatefulSet extends KubeObject {
  spec: { template: { spec: { containers: Array<{ name: string; image?: string }> } } };
}

describe('upgrading from the 0.1.0 CRDs', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  before(async () => {
    cp = await startControlPlane({ apiServerArgs: ['--endpoint-reconciler-type=none'] });
    admin = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { fieldManager: 'test-admin' });
  });
  after(() => cp?.stop());

  /** An operator of a release whose chart renders with these values, reconciling until stopped. */
  async function operatorOf(values: string[]): Promise<Controller> {
    const controller = new Controller({
      client: new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'upgrade-test' }),
      workers: 2,
      resyncMs: 250,
      queue: { baseDelayMs: 50, maxDelayMs: 1000 },
      relayDefaults: relayDefaultsFromEnv(operatorEnv(await renderChart(values))),
    });
    controller.start();
    return controller;
  }

  const relayImage = async (policy: string) =>
    (await admin.get<StatefulSet>('apps/v1', 'StatefulSet', NS, `${policy}-relay`))?.spec.template.spec
      .containers[0]?.image;

  async function createPolicy(name: string, spec: Record<string, unknown> = {}): Promise<RelayPolicy> {
    await cp.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'RelayPolicy',
        metadata: { name, namespace: NS },
        spec: { hostname: 'relay.example.net', ...spec },
      }),
    });
    const stored = await admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', NS, name);
    assert.ok(stored);
    return stored;
  }

  it("tells the upgrade step, and what to do next, in the chart's NOTES", async () => {
    // a stand-in for the Prometheus Operator's CRD: the same group, version and kind
    await cp.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        metadata: { name: 'servicemonitors.monitoring.coreos.com' },
        spec: {
          group: 'monitoring.coreos.com',
          scope: 'Namespaced',
          names: { kind: 'ServiceMonitor', plural: 'servicemonitors', singular: 'servicemonitor' },
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
            },
          ],
        },
      }),
    });
    await waitFor(
      'the ServiceMonitor API',
      async () => (await admin.servesApi('monitoring.coreos.com/v1')) || undefined,
    );
    const notes = await helm(
      [
        'install',
        'sluice',
        CHART,
        '--namespace',
        'sluice-system',
        '--dry-run=client',
        '--set',
        'metrics.serviceMonitor.enabled=true',
      ],
      { kubeconfig: cp.kubeconfigPath, dir: cp.dir },
    );
    assert.match(notes, /NOTES:\n/);
    assert.match(notes, /helm test sluice -n sluice-system/);
    assert.match(notes, /kubectl apply -f examples\/relaypolicy\.yaml -f examples\/smtpuser\.yaml/);
    assert.match(
      notes,
      /Helm installs crds\/ but never upgrades them[\s\S]*kubectl apply --server-side --force-conflicts -f charts\/sluice\/crds\//,
    );
    assert.match(notes, /WARNING: metrics\.serviceMonitor\.labels is empty/);
    assert.match(
      notes,
      new RegExp(`Relays without spec.image run ghcr\\.io/sluice-dev/relay:${OPERATOR_VERSION}`),
    );
  });

  it('moves unpinned relays to each new release, keeps pinned ones, and says so in status', async () => {
    // release 0.1.0: helm created its CRDs; its default wrote the image into each policy
    await cp.kubectl(['create', '-f', PREVIOUS_CRDS]);
    await waitFor(
      'the 0.1.0 CRDs',
      async () => (await admin.servesKinds('sluice.dev/v1alpha1', ['RelayPolicy', 'SmtpUser'])) || undefined,
    );
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    const before = await createPolicy('made-before');
    assert.equal(before.spec.image, 'ghcr.io/sluice-dev/relay:0.1.0', 'the 0.1.0 CRD wrote its default');
    await createPolicy('pinned', { image: 'registry.example.net/relay:0.0.9' });

    // the documented upgrade step, then the new chart's operator
    const applied = await cp.kubectl(['apply', '--server-side', '--force-conflicts', '-f', CHART_CRDS]);
    assert.match(applied.stdout, /relaypolicies\.sluice\.dev serverside-applied/);
    await waitFor('the new CRD schema', async () => {
      const { stdout } = await cp.kubectl(['explain', 'relaypolicy.status.relayImage']);
      return stdout.includes('Image the relay pods are given') || undefined;
    });
    const after = await createPolicy('made-after');
    assert.equal(after.spec.image, undefined, 'no image is written into a new policy');
    assert.equal(
      (await admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', NS, 'made-before'))?.spec.image,
      'ghcr.io/sluice-dev/relay:0.1.0',
      'objects stored under the old CRD are still served as they are',
    );

    const next = await operatorOf(['--set', 'relay.image.tag=0.2.0']);
    try {
      for (const policy of ['made-before', 'made-after'])
        await waitFor(
          `${policy} on 0.2.0`,
          async () => (await relayImage(policy)) === 'ghcr.io/sluice-dev/relay:0.2.0',
        );
      await waitFor(
        'pinned',
        async () => (await relayImage('pinned')) === 'registry.example.net/relay:0.0.9',
      );
      const status = await waitFor('the versions in status', async () => {
        const p = await admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', NS, 'made-before');
        return p?.status?.relayImage ? p.status : undefined;
      });
      assert.equal(status.operatorVersion, OPERATOR_VERSION);
      assert.equal(status.relayImage, 'ghcr.io/sluice-dev/relay:0.2.0');
      await waitFor('the pinned policy status', async () => {
        const p = await admin.get<RelayPolicy>('sluice.dev/v1alpha1', 'RelayPolicy', NS, 'pinned');
        return p?.status?.relayImage === 'registry.example.net/relay:0.0.9';
      });
      const { stdout } = await cp.kubectl(['get', 'relaypolicies', '-n', NS, '-o', 'wide']);
      assert.match(stdout, /RELAY-IMAGE/);
      assert.match(stdout, /^pinned\s.*registry\.example\.net\/relay:0\.0\.9/m);
    } finally {
      await next.stop();
    }

    // and the release after it: the same relays move again
    const later = await operatorOf(['--set', 'relay.image.tag=0.3.0']);
    try {
      await waitFor(
        'made-before on 0.3.0',
        async () => (await relayImage('made-before')) === 'ghcr.io/sluice-dev/relay:0.3.0',
      );
      assert.equal(await relayImage('pinned'), 'registry.example.net/relay:0.0.9');
    } finally {
      await later.stop();
    }
  });
});
