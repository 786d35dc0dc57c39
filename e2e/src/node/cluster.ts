// A real single-node Kubernetes cluster on this machine: etcd and kube-apiserver (Node
// and RBAC authorization, NodeRestriction and OwnerReferencesPermissionEnforcement),
// kube-controller-manager, kube-scheduler, containerd with runc, the kubelet and
// kube-proxy, each a process of the test, each with its own certificate. Pods get
// addresses on a bridge this run creates (10.244.<n>.0/24, the host at .1, which is also
// the node's and the API server's address); Services live in 10.96.<n>.0/24.
//
// stop() undoes everything: pods are deleted through the API and the kubelet stops them,
// then every process is stopped, what is left of containers is killed, mounts under the
// run's directory are unmounted, kube-proxy's nftables tables, the bridge, the cgroups
// and the sysctls are put back as they were.
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import {
  type ControlPlane,
  type Managed,
  startControlPlane,
  startProcess,
} from '@sluice/operator/testing/control-plane';
import { freePort } from '@sluice/relay/testing/ports';
import { BRIDGE_PREFIX, CGROUP_PREFIX, claimHost, Ledger, RUN_DIR_PREFIX } from './abandoned-runs.ts';
import { type NodeBinaries, nodeBinaries } from './binaries.ts';
import { type Containerd, killLeftovers, SANDBOX_IMAGE, shimPids, startContainerd } from './containerd.ts';
import {
  createBridge,
  createCgroupRoot,
  deleteBridge,
  removeCgroupRoot,
  removeKubeletChains,
  removeKubeProxyTables,
  setSysctls,
  sh,
  unmountUnder,
} from './host.ts';
import { buildOciImage, type ImageSpec, importImage } from './oci-image.ts';

export interface NodeCluster {
  cp: ControlPlane;
  nodeName: string;
  /** The node's (and the API server's) address on the pod bridge. */
  nodeIp: string;
  podSubnet: string;
  serviceSubnet: string;
  /** The ClusterIP of kube-dns (the kubelet hands it to pods). */
  dnsIp: string;
  dir: string;
  containerd: Containerd;
  bins: NodeBinaries;
  /**
   * Another address of the host on the pod bridge (10.244.<n>.<200+k>): a client outside
   * the pod network with a source address of its own. Removed with the bridge.
   */
  addClientAddress(k: number): Promise<string>;
  /** Builds an OCI image with umoci and imports it into the node's containerd. */
  loadImage(spec: ImageSpec): Promise<void>;
  /** Milliseconds from the start until the node was Ready, per step. */
  timings: Record<string, number>;
  stop(): Promise<void>;
}

export interface NodeClusterOptions {
  /** Keep the run directory (logs, configs) after stop(), for debugging. */
  keepDir?: boolean;
}

const NODE_NAME = 'node-1';
const CLUSTER_DOMAIN = 'cluster.local';

/** Starts the control plane, the node's components and waits until the node is Ready. */
export async function startNodeCluster(options: NodeClusterOptions = {}): Promise<NodeCluster> {
  const started = Date.now();
  const timings: Record<string, number> = {};
  const mark = (step: string) => {
    timings[step] = Date.now() - started;
  };
  const id = randomBytes(3).toString('hex');
  const n = randomInt(1, 255);
  const nodeIp = `10.244.${n}.1`;
  const podSubnet = `10.244.${n}.0/24`;
  const serviceSubnet = `10.96.${n}.0/24`;
  const dnsIp = `10.96.${n}.10`;
  const bridge = `${BRIDGE_PREFIX}${id}`;
  const cgroupRoot = `${CGROUP_PREFIX}${id}`;
  // A run killed before its stop() left its containers, bridge, mounts and chains here.
  const reclaimed = await claimHost();
  if (reclaimed.runs.length + reclaimed.bridges.length + reclaimed.cgroups.length > 0)
    console.log(`reclaimed what abandoned node runs left: ${JSON.stringify(reclaimed)}`);
  const dir = await mkdtemp(RUN_DIR_PREFIX);
  const ledger = await Ledger.create(dir);
  const undo: (() => Promise<unknown>)[] = [];
  const processes: Managed[] = [];
  let containerd: Containerd | undefined;
  let cp: ControlPlane | undefined;

  const stopAll = async () => {
    const errors: string[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err: unknown) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    if (cp && containerd) await attempt('stopping pods', () => stopPods(cp as ControlPlane, processes));
    for (const p of processes.reverse()) await attempt('stopping a process', () => p.stop());
    if (containerd) {
      const c = containerd;
      await attempt('killing containers', () => killLeftovers(c));
      await attempt('stopping containerd', () => c.managed.stop());
      for (const pid of await shimPids(c.address)) {
        await attempt(`killing shim ${pid}`, async () => process.kill(pid, 'SIGKILL'));
      }
    }
    await attempt('stopping the control plane', async () => cp?.stop());
    await attempt('unmounting', () => unmountUnder(dir));
    for (const f of undo.reverse()) await attempt('undoing a host change', f);
    const leftCgroups = await removeCgroupRoot(cgroupRoot);
    if (leftCgroups.length > 0) errors.push(`cgroups not removed: ${leftCgroups.join(', ')}`);
    if (!options.keepDir)
      await attempt('removing the run directory', () => rm(dir, { recursive: true, force: true }));
    if (errors.length > 0) throw new Error(`node cluster cleanup: ${errors.join('; ')}`);
  };

  try {
    undo.push(() => removeKubeletChains());
    await ledger.record({ bridge, cgroupRoot });
    await createBridge(bridge, `${nodeIp}/24`);
    undo.push(() => deleteBridge(bridge));
    // The kubelet sets the kernel tunables it expects (protectKernelDefaults: false);
    // set them first so that their old values are recorded and restored.
    undo.push(
      await setSysctls(
        {
          'net.ipv4.ip_forward': '1',
          'vm.overcommit_memory': '1',
          'kernel.panic': '10',
          'kernel.panic_on_oops': '1',
        },
        (sysctls) => ledger.record({ sysctls }),
      ),
    );
    const bins = await nodeBinaries(dir);
    await createCgroupRoot(cgroupRoot);

    cp = await startControlPlane({
      address: nodeIp,
      extraServingIps: [`10.96.${n}.1`],
      serviceAccountAdmission: true,
      kubeletClient: true,
      nodeAuthorization: true,
      aggregationLayer: true,
      apiServerArgs: [
        '--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement',
        `--service-cluster-ip-range=${serviceSubnet}`,
      ],
    });
    await ledger.record({ controlPlaneDir: cp.dir });
    mark('control plane');
    const kubeconfig = (user: string, groups: string[] = []) =>
      (cp as ControlPlane).kubeconfigFor({ user, groups });

    const kcmPort = await freePort();
    const kcm = startProcess('kube-controller-manager', bins['kube-controller-manager'], dir, [
      `--kubeconfig=${await kubeconfig('system:kube-controller-manager')}`,
      `--authentication-kubeconfig=${await kubeconfig('system:kube-controller-manager')}`,
      `--authorization-kubeconfig=${await kubeconfig('system:kube-controller-manager')}`,
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${cp.serviceAccountKeyPath}`,
      `--root-ca-file=${cp.caCertPath}`,
      `--service-cluster-ip-range=${serviceSubnet}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
    ]);
    processes.push(kcm);
    const schedulerPort = await freePort();
    const scheduler = startProcess('kube-scheduler', bins['kube-scheduler'], dir, [
      `--kubeconfig=${await kubeconfig('system:kube-scheduler')}`,
      `--authentication-kubeconfig=${await kubeconfig('system:kube-scheduler')}`,
      `--authorization-kubeconfig=${await kubeconfig('system:kube-scheduler')}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedulerPort}`,
    ]);
    processes.push(scheduler);
    await kcm.waitUntil('kube-controller-manager /healthz', () => healthz(kcmPort), { timeoutMs: 120_000 });
    await scheduler.waitUntil('kube-scheduler /healthz', () => healthz(schedulerPort), {
      timeoutMs: 120_000,
    });
    mark('controllers');

    containerd = await startContainerd({ dir, bins, bridge, podSubnet, gateway: nodeIp });
    mark('containerd');
    const c = containerd;
    const loadImage = async (spec: ImageSpec) => {
      const tar = await buildOciImage(spec, dir);
      await importImage(bins.ctr, c.address, tar, spec.ref);
      await rm(join(tar, '..'), { recursive: true, force: true });
    };
    await loadImage({
      ref: SANDBOX_IMAGE,
      layers: [{ source: bins.pause, target: '/pause' }],
      entrypoint: ['/pause'],
      user: '65535:65535',
    });
    mark('pause image');

    const kubeletDir = join(dir, 'kubelet');
    await mkdir(kubeletDir, { recursive: true });
    const resolvConf = join(dir, 'resolv.conf');
    // Pods with dnsPolicy Default get this; nothing outside the machine is reachable.
    await writeFile(resolvConf, 'nameserver 127.0.0.1\n');
    const kubeletConfig = join(dir, 'kubelet-config.json');
    await writeFile(
      kubeletConfig,
      JSON.stringify({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        // This machine boots cgroup v1; kubelet 1.35+ refuses it unless told otherwise.
        failCgroupV1: false,
        cgroupDriver: 'cgroupfs',
        cgroupRoot: `/${cgroupRoot}`,
        failSwapOn: false,
        address: nodeIp,
        port: await freePort(),
        readOnlyPort: 0,
        healthzPort: 0,
        authentication: {
          anonymous: { enabled: false },
          webhook: { enabled: true },
          x509: { clientCAFile: cp.caCertPath },
        },
        authorization: { mode: 'Webhook' },
        clusterDNS: [dnsIp],
        clusterDomain: CLUSTER_DOMAIN,
        resolvConf,
        podLogsDir: join(dir, 'pod-logs'),
        containerRuntimeEndpoint: `unix://${c.address}`,
        imageServiceEndpoint: `unix://${c.address}`,
        // The disk is shared with everything else on the machine: never evict for it.
        evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        registerNode: true,
        serializeImagePulls: false,
        localStorageCapacityIsolation: false,
      }),
    );
    // The kube-apiserver-kubelet-client identity may use the kubelet's API (logs, exec).
    await cp.kubectl([
      'create',
      'clusterrolebinding',
      'kube-apiserver-kubelet-client',
      '--clusterrole=system:kubelet-api-admin',
      '--user=kube-apiserver-kubelet-client',
    ]);
    const kubeletKubeconfig = await kubeconfig(`system:node:${NODE_NAME}`, ['system:nodes']);
    const kubelet = startProcess('kubelet', bins.kubelet, dir, [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--root-dir=${kubeletDir}`,
      `--cert-dir=${join(kubeletDir, 'pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${nodeIp}`,
      '--v=1',
    ]);
    processes.push(kubelet);
    await kubelet.waitUntil(`node ${NODE_NAME} Ready`, () => nodeReady(cp as ControlPlane), {
      timeoutMs: 180_000,
    });
    mark('node Ready');

    const proxyKubeconfig = await kubeconfig('system:kube-proxy');
    const proxyConfig = join(dir, 'kube-proxy-config.json');
    const proxyHealthz = await freePort();
    await writeFile(
      proxyConfig,
      JSON.stringify({
        apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
        kind: 'KubeProxyConfiguration',
        mode: 'nftables',
        clientConnection: { kubeconfig: proxyKubeconfig },
        hostnameOverride: NODE_NAME,
        bindAddress: nodeIp,
        clusterCIDR: podSubnet,
        healthzBindAddress: `127.0.0.1:${proxyHealthz}`,
        metricsBindAddress: `127.0.0.1:${await freePort()}`,
        nodePortAddresses: [`${nodeIp}/32`],
        // Leave the machine's conntrack sysctls alone.
        conntrack: { maxPerCore: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      }),
    );
    undo.push(removeKubeProxyTables);
    const proxy = startProcess('kube-proxy', bins['kube-proxy'], dir, [`--config=${proxyConfig}`]);
    processes.push(proxy);
    // 200 once its rules are programmed.
    await proxy.waitUntil(
      'kube-proxy /healthz',
      async () => (await fetch(`http://127.0.0.1:${proxyHealthz}/healthz`)).ok,
      {
        timeoutMs: 60_000,
      },
    );
    mark('kube-proxy');

    let stopped: Promise<void> | undefined;
    return {
      cp,
      nodeName: NODE_NAME,
      nodeIp,
      podSubnet,
      serviceSubnet,
      dnsIp,
      dir,
      containerd,
      bins,
      loadImage,
      async addClientAddress(k: number) {
        const address = podSubnet.replace(/0\/24$/, String(200 + k));
        await sh('ip', ['addr', 'add', `${address}/32`, 'dev', bridge]);
        return address;
      },
      timings,
      stop() {
        stopped ??= stopAll();
        return stopped;
      },
    };
  } catch (err: unknown) {
    await stopAll().catch((cleanup: unknown) => {
      (err as Error).message += `\n(and ${(cleanup as Error).message})`;
    });
    throw err;
  }
}

/** GET https://127.0.0.1:<port>/healthz on a component's self-signed serving port. */
function healthz(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function nodeReady(cp: ControlPlane): Promise<boolean> {
  const { stdout } = await cp.kubectl([
    'get',
    'node',
    NODE_NAME,
    '-o',
    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
  ]);
  return stdout.trim() === 'True';
}

/**
 * Stops what would recreate pods (the controllers and scheduler come first in
 * `processes`), deletes every pod through the API and waits until the kubelet has
 * stopped them all and the objects are gone.
 */
async function stopPods(cp: ControlPlane, processes: Managed[]): Promise<void> {
  for (const p of processes.slice(0, 2)) await p.stop();
  await cp.kubectl(['delete', 'pods', '--all', '--all-namespaces', '--grace-period=2', '--wait=false']);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { stdout } = await cp.kubectl(['get', 'pods', '--all-namespaces', '-o', 'name']);
    if (stdout.trim() === '') return;
    if (Date.now() > deadline) throw new Error(`pods not stopped after 60 s: ${stdout.trim()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Reads a file from the run directory (a component's log), for failure messages. */
export async function readLog(cluster: NodeCluster, name: string): Promise<string> {
  return readFile(join(cluster.dir, `${name}.log`), 'utf8').catch(() => '');
}
