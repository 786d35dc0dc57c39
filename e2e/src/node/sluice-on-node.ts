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
