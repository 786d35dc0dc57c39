// Storage for the spool PersistentVolumeClaims on the real node, with no provisioner:
// a StorageClass `local-spool` (no-provisioner, WaitForFirstConsumer, the default
// class) and pre-created `local` PersistentVolumes, each a directory in the run's
// directory pinned to the node. The controller manager binds claims to them and the
// kubelet mounts them, as with local volumes in production.
import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeCluster } from './cluster.ts';

export const STORAGE_CLASS = 'local-spool';

/** Creates the StorageClass and `count` volumes of `capacity` each. */
export async function createLocalVolumes(
  cluster: NodeCluster,
  count: number,
  capacity = '10Gi',
): Promise<void> {
  const items: object[] = [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: {
        name: STORAGE_CLASS,
        annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
      },
      provisioner: 'kubernetes.io/no-provisioner',
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: false,
    },
  ];
  for (let i = 0; i < count; i++) {
    const path = join(cluster.dir, 'volumes', `pv-${i}`);
    await mkdir(path, { recursive: true });
    // A fresh disk is root's; fsGroup hands it to the pod's group when mounted.
    await chown(path, 0, 0);
    items.push({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: `local-${i}` },
      spec: {
        capacity: { storage: capacity },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: STORAGE_CLASS,
        local: { path },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: 'kubernetes.io/hostname', operator: 'In', values: [cluster.nodeName] },
                ],
              },
            ],
          },
        },
      },
    });
  }
  await cluster.cp.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
  });
}
