// containerd for one node: its root, state, socket, CNI configuration and network
// namespaces all under the run's directory (a short /tmp path: unix socket paths are
// limited to 108 bytes), runc with the cgroupfs driver (PID 1 is not systemd here),
// the overlayfs snapshotter, and the bridge + host-local CNI plugins on the run's bridge.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Managed, startProcess } from '@sluice/operator/testing/control-plane';
import type { NodeBinaries } from './binaries.ts';
import { sh } from './host.ts';

export const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10.2';

export interface ContainerdOptions {
  dir: string;
  bins: NodeBinaries;
  bridge: string;
  podSubnet: string;
  gateway: string;
}

export interface Containerd {
  address: string;
  managed: Managed;
  /** Runs ctr against this containerd in namespace k8s.io. */
  ctr(args: string[]): Promise<string>;
}

function config(o: ContainerdOptions, cniConf: string): string {
  const root = join(o.dir, 'containerd');
  return `version = 3
root = '${root}/root'
state = '${root}/state'
disabled_plugins = [
  'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs', 'io.containerd.internal.v1.opt',
  'io.containerd.nri.v1.nri', 'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
]

[grpc]
  address = '${root}/containerd.sock'

[ttrpc]
  address = '${root}/containerd.sock.ttrpc'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '${SANDBOX_IMAGE}'

[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  # This machine withholds CAP_SYS_RESOURCE: no process may lower its oom_score_adj below
  # its parent's, so containers keep containerd's instead of the kubelet's -998.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '${o.bins.runc}'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['${o.bins.cniDir}']
    conf_dir = '${cniConf}'
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`;
}

/** Starts containerd and waits until it answers. */
export async function startContainerd(o: ContainerdOptions): Promise<Containerd> {
  const root = join(o.dir, 'containerd');
  const cniConf = join(root, 'cni');
  await mkdir(cniConf, { recursive: true });
  await writeFile(
    join(cniConf, '10-sluice.conflist'),
    JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'sluice',
        plugins: [
          {
            type: 'bridge',
            bridge: o.bridge,
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              // .200 and up are left for client addresses the tests add to the bridge.
              ranges: [
                [
                  {
                    subnet: o.podSubnet,
                    gateway: o.gateway,
                    rangeStart: o.podSubnet.replace(/0\/24$/, '2'),
                    rangeEnd: o.podSubnet.replace(/0\/24$/, '199'),
                  },
                ],
              ],
              // Service ClusterIPs are off the pod subnet: without a default route a pod
              // cannot even send to them for kube-proxy to rewrite.
              routes: [{ dst: '0.0.0.0/0' }],
              dataDir: join(root, 'ipam'),
            },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    ),
  );
  const configPath = join(root, 'config.toml');
  await writeFile(configPath, config(o, cniConf));
  const address = join(root, 'containerd.sock');
  // containerd finds containerd-shim-runc-v2 on PATH.
  const env = {
    ...process.env,
    PATH: `${o.bins.shimDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
  };
  const managed = startProcess('containerd', o.bins.containerd, o.dir, ['--config', configPath], env);
  const ctr = (args: string[]) => sh(o.bins.ctr, ['--address', address, '-n', 'k8s.io', ...args]);
  await managed.waitUntil(
    'containerd',
    async () => {
      await sh(o.bins.ctr, ['--address', address, 'version']);
      return true;
    },
    { timeoutMs: 60_000 },
  );
  return { address, managed, ctr };
}

/**
 * Kills whatever containers are left (after the kubelet has stopped its pods, normally
 * none) and the shims of this containerd, found by its socket path in their command line.
 */
export async function killLeftovers(c: Containerd): Promise<void> {
  const tasks = await c.ctr(['tasks', 'ls', '-q']).catch(() => '');
  for (const id of tasks.split('\n').filter(Boolean)) {
    await c.ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id]).catch(() => undefined);
  }
}

/** PIDs of containerd-shim processes started for `address` (their argv names it). */
export async function shimPids(address: string): Promise<number[]> {
  const out = await sh('pgrep', ['-f', '--', `-address ${address}`]).catch(() => '');
  return out
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== process.pid);
}
