// Sluice installed on the real node the way a platform team installs it: the relay and
// operator images built from their Dockerfiles, `helm install` of charts/sluice with the
// operator running in-cluster from its image under the chart's ServiceAccount, cluster
// DNS, metrics-server (what the HPA reads), local volumes for the spools.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { helm } from '../helm.ts';
import type { NodeCluster } from './cluster.ts';
import { type ClusterDnsOptions, deployClusterDns } from './cluster-dns.ts';
import { createLocalVolumes } from './local-volumes.ts';
import { deployMetricsServer } from './metrics-server.ts';
import { loadProductImage } from './product-images.ts';

const CHART = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'charts', 'sluice');
export const RELAY_IMAGE = 'sluice.test/relay:dev';
export const OPERATOR_IMAGE = 'sluice.test/operator:dev';
export const RELEASE = 'sluice';
export const RELEASE_NAMESPACE = 'sluice-system';

export interface InstallOptions {
  dns?: ClusterDnsOptions;
  /** Local PersistentVolumes to create for spool claims. */
  volumes?: number;
  /**
   * Install as the previous release (0.1.0): its CRDs first (e2e/fixtures/crds-0.1.0, as
   * its chart created them; Helm then skips those kinds in crds/ and creates only the
   * SendingDomain CRD, new since), its operator and its relay default under the tag
   * 0.1.0. Those images are this tree's, tagged 0.1.0: the 0.1.0 operator image cannot
   * be built here (its source and npm dependencies are not in this tree), so what the
   * upgrade changes is the image references, the CRDs and the chart's values, and the
   * relays roll because their image does.
   */
  previousRelease?: boolean;
}

const PREVIOUS_CRDS = resolve(CHART, '..', '..', 'e2e', 'fixtures', 'crds-0.1.0');
export const PREVIOUS_TAG = '0.1.0';
export const PREVIOUS_RELAY_IMAGE = `sluice.test/relay:${PREVIOUS_TAG}`;
export const PREVIOUS_OPERATOR_IMAGE = `sluice.test/operator:${PREVIOUS_TAG}`;

/** `--set` flags for the operator's and the relays' default image, both at `tag`. */
function imageValues(cluster: NodeCluster, tag: string): string[] {
  const repository = (image: string) => image.split(':')[0] as string;
  return [
    '--set',
    `operator.image.repository=${repository(OPERATOR_IMAGE)}`,
    '--set',
    `operator.image.tag=${tag}`,
    '--set',
    'operator.image.pullPolicy=Never',
    '--set',
    `relay.image.repository=${repository(RELAY_IMAGE)}`,
    '--set',
    `relay.image.tag=${tag}`,
    '--set-json',
    `podNetworks=${JSON.stringify([cluster.podSubnet])}`,
    '--wait',
    '--timeout=3m',
  ];
}

const helmOn = (cluster: NodeCluster, args: string[]) =>
  helm(args, { kubeconfig: cluster.cp.kubeconfigPath, dir: join(cluster.dir, 'helm-home') });

/**
 * Builds and loads both images, deploys DNS, metrics-server and volumes, helm-installs
 * the chart and waits for the operator.
 */
export async function installSluice(cluster: NodeCluster, options: InstallOptions = {}): Promise<void> {
  await loadProductImage(cluster, 'relay', RELAY_IMAGE);
  await loadProductImage(cluster, 'operator', OPERATOR_IMAGE);
  await deployClusterDns(cluster, options.dns);
  await deployMetricsServer(cluster);
  await createLocalVolumes(cluster, options.volumes ?? 4);
  let tag = OPERATOR_IMAGE.split(':')[1] as string;
  if (options.previousRelease) {
    await cluster.containerd.ctr(['images', 'tag', RELAY_IMAGE, PREVIOUS_RELAY_IMAGE]);
    await cluster.containerd.ctr(['images', 'tag', OPERATOR_IMAGE, PREVIOUS_OPERATOR_IMAGE]);
    await cluster.cp.kubectl(['create', '-f', PREVIOUS_CRDS]);
    await cluster.cp.kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    tag = PREVIOUS_TAG;
  }
  await helmOn(cluster, [
    'install',
    RELEASE,
    CHART,
    '--namespace',
    RELEASE_NAMESPACE,
    '--create-namespace',
    ...imageValues(cluster, tag),
  ]);
}

/**
 * The documented upgrade (docs/kubernetes.md, "Upgrade and uninstall"): this chart's CRDs
 * applied server-side, then `helm upgrade` to this chart with this tree's images.
 * Returns what the CRD step printed.
 */
export async function upgradeSluice(cluster: NodeCluster): Promise<string> {
  const { stdout } = await cluster.cp.kubectl([
    'apply',
    '--server-side',
    '--force-conflicts',
    '-f',
    resolve(CHART, 'crds'),
  ]);
  await cluster.cp.kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  await helmOn(cluster, [
    'upgrade',
    RELEASE,
    CHART,
    '--namespace',
    RELEASE_NAMESPACE,
    ...imageValues(cluster, OPERATOR_IMAGE.split(':')[1] as string),
  ]);
  return stdout;
}

export const NAMESPACE = 'mail';
export const POLICY = 'relay';

export const USERS = [
  { name: 'alice', username: 'alice@example.com', password: 'alice-password-1' },
  { name: 'bob', username: 'bob@example.com', password: 'bob-password-1' },
];

/** Password Secrets, SmtpUsers and a RelayPolicy (two replicas, the relay image) as a kubectl list. */
export function relayResources(spec: Record<string, unknown> = {}): string {
  const items: object[] = [];
  for (const user of USERS) {
    items.push(
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: `${user.name}-password`, namespace: NAMESPACE },
        stringData: { password: user.password },
      },
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'SmtpUser',
        metadata: { name: user.name, namespace: NAMESPACE },
        spec: {
          username: user.username,
          policyRef: { name: POLICY },
          passwordSecretRef: { name: `${user.name}-password`, key: 'password' },
        },
      },
    );
  }
  items.push({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata: { name: POLICY, namespace: NAMESPACE },
    spec: {
      replicas: 2,
      image: RELAY_IMAGE,
      imagePullPolicy: 'Never',
      hostname: 'relay.node.test',
      listeners: [{ name: 'submission', port: 587, tls: 'starttls' }],
      service: { type: 'ClusterIP' },
      drainDeadlineSeconds: 2,
      ...spec,
    },
  });
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/** Polls the RelayPolicy until Ready=True; fails after the deadline with its status, pods and events. */
export async function waitPolicyReady(cluster: NodeCluster, timeoutMs = 180_000): Promise<PolicyStatus> {
  const get = async () => {
    const { stdout } = await cluster.cp.kubectl([
      'get',
      'relaypolicy',
      POLICY,
      '-n',
      NAMESPACE,
      '-o',
      'json',
    ]);
    return (JSON.parse(stdout) as { status?: PolicyStatus }).status ?? {};
  };
  const deadline = Date.now() + timeoutMs;
  let status = await get();
  while (!status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
    if (Date.now() > deadline) {
      const pods = await cluster.cp.kubectl(['get', 'pods,pvc', '-n', NAMESPACE, '-o', 'wide']);
      const events = await cluster.cp.kubectl(['get', 'events', '-n', NAMESPACE]);
      const logs = await cluster.cp
        .kubectl(['logs', '-n', RELEASE_NAMESPACE, `deployment/${RELEASE}-operator`, '--tail=30'])
        .catch((e: unknown) => ({ stdout: String(e) }));
      throw new Error(
        `policy not Ready: ${JSON.stringify(status)}\n${pods.stdout}\n${events.stdout}\n${logs.stdout}`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
    status = await get();
  }
  return status;
}

export interface PolicyStatus {
  readyReplicas?: number;
  operatorVersion?: string;
  relayImage?: string;
  userCount?: number;
  conditions?: { type: string; status: string; reason: string; message: string }[];
}
