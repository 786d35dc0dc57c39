// Sluice installed on the real node the way a platform team installs it: the relay and
// operator images built from their Dockerfiles, `helm install` of charts/sluice with the
// operator running in-cluster from its image under the chart's ServiceAccount, cluster
// DNS, local volumes for the spools.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { helm } from '../helm.ts';
import type { NodeCluster } from './cluster.ts';
import { type ClusterDnsOptions, deployClusterDns } from './cluster-dns.ts';
import { createLocalVolumes } from './local-volumes.ts';
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
}

/** Builds and loads both images, deploys DNS and volumes, helm-installs the chart and waits for the operator. */
export async function installSluice(cluster: NodeCluster, options: InstallOptions = {}): Promise<void> {
  await loadProductImage(cluster, 'relay', RELAY_IMAGE);
  await loadProductImage(cluster, 'operator', OPERATOR_IMAGE);
  await deployClusterDns(cluster, options.dns);
  await createLocalVolumes(cluster, options.volumes ?? 4);
  const [repository, tag] = OPERATOR_IMAGE.split(':') as [string, string];
  await helm(
    [
      'install',
      RELEASE,
      CHART,
      '--namespace',
      RELEASE_NAMESPACE,
      '--create-namespace',
      '--set',
      `operator.image.repository=${repository}`,
      '--set',
      `operator.image.tag=${tag}`,
      '--set',
      'operator.image.pullPolicy=Never',
      '--set-json',
      `podNetworks=${JSON.stringify([cluster.podSubnet])}`,
      '--wait',
      '--timeout=3m',
    ],
    { kubeconfig: cluster.cp.kubeconfigPath, dir: join(cluster.dir, 'helm-home') },
  );
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
  userCount?: number;
  conditions?: { type: string; status: string; reason: string; message: string }[];
}
