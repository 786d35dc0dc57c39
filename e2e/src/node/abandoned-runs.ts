// A node run that is killed (a CI time limit, kill -9 of the test process, a machine
// session that ends) cannot undo what it changed on the host: its containers go on
// running under their shims, its bridge, mounts, cgroups, iptables chains and
// kube-proxy's nftables tables stay, and every later run would find "a kubelet" there and
// refuse. So each run keeps a ledger in its directory (its process, the bridge, the
// cgroup root, the old values of the sysctls it set, the control plane's directory),
// written before each change is made; a run that starts first reclaims every run whose
// process is gone, undoing what its ledger names the way stop() would have, and refuses
// only while another run (or a kubelet of another installation) is alive.
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  deleteBridge,
  hierarchies,
  processes,
  removeCgroupRoot,
  removeKubeletChains,
  removeKubeProxyTables,
  sh,
  unmountUnder,
} from './host.ts';

/** Where node runs keep their directories (`mkdtemp(RUN_DIR_PREFIX)`). */
export const RUN_DIR_PREFIX = '/tmp/sn-';
/** Bridge and cgroup-root name prefixes of node runs. */
export const BRIDGE_PREFIX = 'snb';
export const CGROUP_PREFIX = 'sluice-node-';
const LEDGER_FILE = 'node-run.json';

export interface RunLedger {
  /** The test process that owns the run, and its start time (a reused pid is not it). */
  pid: number;
  startTime: string;
  bridge?: string;
  cgroupRoot?: string;
  /** sysctl path → the value before the run set it. */
  sysctls?: Record<string, string>;
  controlPlaneDir?: string;
}

/** The ledger of the run in `dir`, rewritten whole (rename) at each change. */
export class Ledger {
  readonly #dir: string;
  #state: RunLedger;
  private constructor(dir: string, state: RunLedger) {
    this.#dir = dir;
    this.#state = state;
  }

  /** A ledger for a run owned by `pid` (this process unless a test says otherwise). */
  static async create(dir: string, pid = process.pid): Promise<Ledger> {
    const startTime = await processStartTime(pid);
    if (startTime === undefined) throw new Error(`cannot read /proc/${pid}/stat`);
    const ledger = new Ledger(dir, { pid, startTime });
    await ledger.record({});
    return ledger;
  }

  async record(change: Partial<RunLedger>): Promise<void> {
    this.#state = {
      ...this.#state,
      ...change,
      sysctls: { ...this.#state.sysctls, ...change.sysctls },
    };
    const path = join(this.#dir, LEDGER_FILE);
    await writeFile(`${path}.tmp`, JSON.stringify(this.#state));
    await rename(`${path}.tmp`, path);
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

async function readLedger(dir: string): Promise<RunLedger | undefined> {
  const text = await readFile(join(dir, LEDGER_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as RunLedger;
  } catch {
    return undefined;
  }
}

async function alive(ledger: RunLedger | undefined): Promise<boolean> {
  return ledger !== undefined && (await processStartTime(ledger.pid)) === ledger.startTime;
}

async function runDirs(): Promise<string[]> {
  const base = RUN_DIR_PREFIX.slice(0, RUN_DIR_PREFIX.lastIndexOf('/'));
  const prefix = RUN_DIR_PREFIX.slice(base.length + 1);
  const entries = await readdir(base, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && e.name.startsWith(prefix)).map((e) => join(base, e.name));
}

/** Processes (other than this one) whose command line names a path at or below `dir`. */
async function processesNaming(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const pid of processes()) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg === dir || arg.includes(`${dir}/`))) pids.push(pid);
  }
  return pids;
}

/** Processes in `/<root>` or below, in any cgroup v1 hierarchy. */
async function processesInCgroup(root: string): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const line of procs.split('\n')) if (line) pids.add(Number(line));
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
  };
  for (const h of await hierarchies(true).catch(() => [])) await walk(join(h, root));
  pids.delete(process.pid);
  return [...pids];
}

/** Whether `pid` is a process that has not exited (a zombie has exited). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat !== undefined && stat[stat.lastIndexOf(')') + 2] !== 'Z';
}

/** SIGKILLs `pids` and waits (up to 10 s) until they have exited. */
async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 10_000;
  for (let left = pids; left.length > 0 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 50));
    const still = [];
    for (const pid of left) if (await running(pid)) still.push(pid);
    left = still;
  }
}

async function cgroupRoots(): Promise<string[]> {
  const names = new Set<string>();
  for (const h of await hierarchies(true).catch(() => [])) {
    const entries = await readdir(h, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory() && e.name.startsWith(CGROUP_PREFIX)) names.add(e.name);
  }
  return [...names];
}

async function bridges(): Promise<string[]> {
  const out = await sh('ip', ['-j', 'link', 'show', 'type', 'bridge']).catch(() => '[]');
  return (JSON.parse(out || '[]') as { ifname: string }[])
    .map((l) => l.ifname)
    .filter((name) => name.startsWith(BRIDGE_PREFIX));
}

/** Pids of processes named kubelet. */
async function kubelets(): Promise<number[]> {
  const pids: number[] = [];
  for await (const pid of processes()) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'kubelet') pids.push(pid);
  }
  return pids;
}

/** Undoes what the run in `dir` changed on the host (its ledger may be missing). */
async function reclaim(dir: string, ledger: RunLedger | undefined): Promise<void> {
  const trees = [dir, ...(ledger?.controlPlaneDir ? [ledger.controlPlaneDir] : [])];
  for (const tree of trees) await killAll(await processesNaming(tree));
  if (ledger?.cgroupRoot) {
    await killAll(await processesInCgroup(ledger.cgroupRoot));
    await removeCgroupRoot(ledger.cgroupRoot);
  }
  await unmountUnder(dir);
  if (ledger?.bridge) await deleteBridge(ledger.bridge);
  for (const [path, old] of Object.entries(ledger?.sysctls ?? {})) {
    await writeFile(path, old).catch(() => undefined);
  }
  for (const tree of trees) await rm(tree, { recursive: true, force: true });
}

export interface Reclaimed {
  /** Run directories whose owner was gone, now removed. */
  runs: string[];
  /** Bridges and cgroup roots of node runs that no live run claims, now removed. */
  bridges: string[];
  cgroups: string[];
}

/**
 * Reclaims every node run whose owning process is gone, and the bridges and cgroup
 * roots of node runs that no live run claims (a run killed before its ledger named
 * them); with no live run left, the kubelet's iptables chains and kube-proxy's nftables
 * tables go too. Returns the live runs' ledgers and what was reclaimed.
 */
export async function reclaimAbandonedRuns(): Promise<{
  live: (RunLedger & { dir: string })[];
  reclaimed: Reclaimed;
}> {
  const live: (RunLedger & { dir: string })[] = [];
  const reclaimed: Reclaimed = { runs: [], bridges: [], cgroups: [] };
  for (const dir of await runDirs()) {
    const ledger = await readLedger(dir);
    if (ledger !== undefined && (await alive(ledger))) {
      live.push({ ...ledger, dir });
      continue;
    }
    await reclaim(dir, ledger);
    reclaimed.runs.push(dir);
  }
  const claimedBridges = new Set(live.map((l) => l.bridge));
  const claimedCgroups = new Set(live.map((l) => l.cgroupRoot));
  for (const root of await cgroupRoots()) {
    if (claimedCgroups.has(root)) continue;
    await killAll(await processesInCgroup(root));
    await removeCgroupRoot(root);
    reclaimed.cgroups.push(root);
  }
  for (const bridge of await bridges()) {
    if (claimedBridges.has(bridge)) continue;
    await deleteBridge(bridge);
    reclaimed.bridges.push(bridge);
  }
  if (live.length === 0) {
    await removeKubeletChains();
    await removeKubeProxyTables();
  }
  return { live, reclaimed };
}

/**
 * Makes the host ready for a new node run: reclaims abandoned runs, then refuses, with
 * who it is, if another run or a kubelet of another installation is alive (the kubelet's
 * iptables chains and kube-proxy's tables are one per machine).
 */
export async function claimHost(): Promise<Reclaimed> {
  const { live, reclaimed } = await reclaimAbandonedRuns();
  if (live.length > 0) {
    const other = live[0] as RunLedger & { dir: string };
    throw new Error(
      `another node run is alive on this machine: process ${other.pid}, directory ${other.dir}`,
    );
  }
  const foreign = await kubelets();
  if (foreign.length > 0) {
    throw new Error(
      `a kubelet that no node run of these tests started runs on this machine (pid ${foreign.join(', ')})`,
    );
  }
  return reclaimed;
}
