// Where e2e/node/build.sh puts the node's binaries: <cache>/bin/<name>-<version>, the
// Kubernetes ones at the control plane's version, the others at the versions build.sh
// pins (read from it, so the two never disagree).
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir, controlPlaneVersions, missingBinaries } from '@sluice/operator/testing/control-plane';

/** The command that builds the node's binaries, relative to the repository root. */
export const NODE_BUILD_COMMAND = 'e2e/node/build.sh';
const BUILD_SH = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'build.sh');

const KUBE = ['kubelet', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy'] as const;
const OTHERS = {
  containerd: 'containerd_version',
  ctr: 'containerd_version',
  'containerd-shim-runc-v2': 'containerd_version',
  runc: 'runc_version',
  bridge: 'cni_version',
  'host-local': 'cni_version',
  loopback: 'cni_version',
  portmap: 'cni_version',
  coredns: 'coredns_version',
  'metrics-server': 'metrics_server_version',
} as const;
const CNI_PLUGINS = ['bridge', 'host-local', 'loopback', 'portmap'] as const;

type Name = (typeof KUBE)[number] | keyof typeof OTHERS | 'pause';

/** Absolute path of each node binary in the cache. */
export function nodeBinaryPaths(): Record<Name, string> {
  const script = readFileSync(BUILD_SH, 'utf8');
  const pinned = (variable: string): string => {
    const match = script.match(new RegExp(`^${variable}=(v\\S+)$`, 'm'));
    if (match?.[1] === undefined) throw new Error(`${variable} is not set in ${BUILD_SH}`);
    return match[1];
  };
  const kube = controlPlaneVersions().kubernetes;
  const bin = join(cacheDir(), 'bin');
  const paths = {} as Record<Name, string>;
  for (const name of KUBE) paths[name] = join(bin, `${name}-${kube}`);
  for (const [name, variable] of Object.entries(OTHERS))
    paths[name as Name] = join(bin, `${name}-${pinned(variable)}`);
  paths.pause = join(bin, `pause-${kube}`);
  return paths;
}

/** A skip reason when the node's or the control plane's binaries are missing, else false. */
export function skipUnlessNodeBuilt(): string | false {
  if (process.getuid?.() !== 0) return 'the node tier runs as root (network namespaces, mounts, cgroups)';
  const missing = Object.values(nodeBinaryPaths()).filter((path) => {
    try {
      accessSync(path, constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  missing.push(...missingBinaries(['kube-apiserver', 'etcd', 'kubectl', 'helm']));
  if (missing.length === 0) return false;
  return `node binaries not built (missing ${missing.join(', ')}); run ${NODE_BUILD_COMMAND} and e2e/controlplane/build.sh`;
}

export type NodeBinaries = Record<Name, string> & {
  /** A directory holding runc and containerd-shim-runc-v2 under their plain names. */
  shimDir: string;
  /** A directory holding the CNI plugins under their plain names. */
  cniDir: string;
};

/** The binaries, with the directories of plainly named links containerd looks in. */
export async function nodeBinaries(runDir: string): Promise<NodeBinaries> {
  const paths = nodeBinaryPaths();
  const shimDir = join(runDir, 'bin');
  const cniDir = join(runDir, 'cni-bin');
  await mkdir(shimDir, { recursive: true });
  await mkdir(cniDir, { recursive: true });
  for (const name of ['runc', 'containerd-shim-runc-v2'] as const)
    await symlink(paths[name], join(shimDir, name));
  for (const name of CNI_PLUGINS) await symlink(paths[name], join(cniDir, name));
  return { ...paths, shimDir, cniDir };
}
