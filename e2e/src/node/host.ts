// What a node changes on the host, done so it can be undone: a bridge for the pod
// network (a name and subnet of its own, so two runs never share one), the sysctls the
// kubelet and pod routing need (the old values are put back), a cgroup root per run in
// every cgroup v1 hierarchy, and a sweep of mounts left under the run's directory.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs a host tool (ip, nft, umount), its stderr in the error. */
export async function sh(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(command, args, { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 });
    return stdout;
  } catch (err: unknown) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`${command} ${args.join(' ')}: ${(err as Error).message}\n${stderr}`, { cause: err });
  }
}

/** Creates bridge `name` with `address` (CIDR form, e.g. 10.244.7.1/24) and brings it up. */
export async function createBridge(name: string, address: string): Promise<void> {
  await sh('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
  await sh('ip', ['addr', 'add', address, 'dev', name]);
  await sh('ip', ['link', 'set', name, 'up']);
}

/** Deletes the bridge (its veths go with their network namespaces); absent is fine. */
export async function deleteBridge(name: string): Promise<void> {
  await sh('ip', ['link', 'del', name]).catch(() => undefined);
}

const SYSCTL = '/proc/sys';

/**
 * Sets sysctls and returns a function that puts the previous values back; `remember`
 * gets those previous values (path → value) before anything is written.
 */
export async function setSysctls(
  values: Record<string, string>,
  remember: (previous: Record<string, string>) => Promise<void> = async () => undefined,
): Promise<() => Promise<void>> {
  const previous: [string, string][] = [];
  for (const [key, value] of Object.entries(values)) {
    const path = join(SYSCTL, ...key.split('.'));
    const old = (await readFile(path, 'utf8')).trim();
    if (old !== value) previous.push([path, old]);
  }
  await remember(Object.fromEntries(previous));
  for (const [path] of previous) {
    const key = path.slice(SYSCTL.length + 1).replaceAll('/', '.');
    await writeFile(path, values[key] as string);
  }
  return async () => {
    for (const [path, old] of previous.reverse()) await writeFile(path, old).catch(() => undefined);
  };
}

const CGROUP_V1 = '/sys/fs/cgroup';

/**
 * The cgroup v1 hierarchies mounted here (cpu, memory, ..., systemd), as directories;
 * with `unified`, also the cgroup v2 hierarchy of this hybrid layout (where the kubelet
 * creates the root's cgroups too).
 */
export async function hierarchies(unified = false): Promise<string[]> {
  const entries = await readdir(CGROUP_V1, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && (unified || e.name !== 'unified'))
    .map((e) => join(CGROUP_V1, e.name));
}

/** Creates `/<root>` in every hierarchy (the kubelet's cgroupRoot must exist). */
export async function createCgroupRoot(root: string): Promise<void> {
  for (const h of await hierarchies()) {
    const dir = join(h, root);
    await mkdir(dir, { recursive: true });
    if (h.endsWith('/cpuset')) {
      // A new cpuset has no CPUs or memory nodes until given its parent's.
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        await writeFile(join(dir, file), await readFile(join(h, file), 'utf8'));
      }
    }
  }
}

/** Removes `/<root>` and everything below it in every hierarchy (v2 too), deepest first. */
export async function removeCgroupRoot(root: string): Promise<string[]> {
  const left: string[] = [];
  const removeTree = async (dir: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) await removeTree(join(dir, e.name));
    await rmdir(dir).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
    });
  };
  for (const h of await hierarchies(true)) await removeTree(join(h, root));
  return left;
}

/** Mount points at or below `dir`, deepest first, from /proc/self/mountinfo. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .map((p) => p.replace(/\\040/g, ' '));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything below `dir` (lazily, so a busy mount cannot stop the cleanup). */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = await mountsUnder(dir);
    if (points.length === 0) return;
    for (const p of points) await sh('umount', ['-l', p]).catch(() => undefined);
  }
}

const KUBELET_CHAINS: [table: string, chain: string][] = [
  ['mangle', 'KUBE-IPTABLES-HINT'],
  ['mangle', 'KUBE-KUBELET-CANARY'],
  ['nat', 'KUBE-KUBELET-CANARY'],
  ['filter', 'KUBE-KUBELET-CANARY'],
  ['filter', 'KUBE-FIREWALL'],
];

/** Deletes kube-proxy's nftables tables (its nftables mode makes one per family). */
export async function removeKubeProxyTables(): Promise<void> {
  for (const family of ['ip', 'ip6'])
    await sh('nft', ['delete', 'table', family, 'kube-proxy']).catch(() => undefined);
}

/** The pids of the processes running now, other than this one. */
export async function* processes(): AsyncGenerator<number> {
  for (const name of await readdir('/proc')) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid !== process.pid) yield pid;
  }
}

/** Removes the chains (and the jumps to them) that the kubelet adds to iptables. */
export async function removeKubeletChains(): Promise<void> {
  for (const tool of ['iptables', 'ip6tables']) {
    for (const hook of ['INPUT', 'OUTPUT']) {
      await sh(tool, ['-w', '-t', 'filter', '-D', hook, '-j', 'KUBE-FIREWALL']).catch(() => undefined);
    }
    for (const [table, chain] of KUBELET_CHAINS) {
      await sh(tool, ['-w', '-t', table, '-F', chain]).catch(() => undefined);
      await sh(tool, ['-w', '-t', table, '-X', chain]).catch(() => undefined);
    }
  }
}
