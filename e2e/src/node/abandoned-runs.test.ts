// A node run killed before its stop() (kill -9, a CI time limit) leaves containers,
// mounts, a bridge, cgroups and sysctls behind; the next run reclaims them instead of
// refusing to start. Real processes, mounts, links and cgroups; no cluster needed.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  BRIDGE_PREFIX,
  CGROUP_PREFIX,
  claimHost,
  Ledger,
  RUN_DIR_PREFIX,
  reclaimAbandonedRuns,
} from './abandoned-runs.ts';
import { createBridge, createCgroupRoot, deleteBridge, mountsUnder, removeCgroupRoot, sh } from './host.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (mounts, links, cgroups)' : false;
const PANIC = '/proc/sys/kernel/panic';
const UNIFIED = '/sys/fs/cgroup/unified';

/** A process that runs until killed, with `args` in its command line. */
function sleeper(...args: string[]): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)', '--', ...args], { stdio: 'ignore' });
}

async function linkExists(name: string): Promise<boolean> {
  return sh('ip', ['link', 'show', name]).then(
    () => true,
    () => false,
  );
}

const suffix = () => Math.random().toString(16).slice(2, 8);

describe('a node run killed before it could clean up', { skip }, () => {
  test('the next run kills its processes and containers and removes its mounts, bridge, cgroups and directory, and puts its sysctls back', async () => {
    // The killed run's test process: started, its ledger written, then gone.
    const owner = sleeper();
    await once(owner, 'spawn');
    const dir = await mkdtemp(RUN_DIR_PREFIX);
    const ledger = await Ledger.create(dir, owner.pid);
    owner.kill('SIGKILL');
    await once(owner, 'exit');

    const bridge = `${BRIDGE_PREFIX}${suffix()}`;
    const cgroupRoot = `${CGROUP_PREFIX}${suffix()}`;
    const panicBefore = (await readFile(PANIC, 'utf8')).trim();
    await ledger.record({ bridge, cgroupRoot, sysctls: { [PANIC]: panicBefore } });
    await createBridge(bridge, '10.244.250.1/24');
    await writeFile(PANIC, String(Number(panicBefore) + 7));
    await createCgroupRoot(cgroupRoot);
    // The kubelet also creates the root's cgroups in the cgroup v2 hierarchy of a hybrid layout.
    const unified = existsSync(UNIFIED) ? join(UNIFIED, cgroupRoot, 'kubepods') : undefined;
    if (unified) await mkdir(unified, { recursive: true });
    // A component that names the run's directory (as the kubelet and the shims do) and a
    // container in the run's cgroups.
    const component = sleeper(`--root-dir=${dir}/kubelet`);
    const container = sleeper();
    await Promise.all([once(component, 'spawn'), once(container, 'spawn')]);
    await writeFile(`/sys/fs/cgroup/memory/${cgroupRoot}/cgroup.procs`, String(container.pid));
    await mkdir(join(dir, 'kubelet', 'pods'), { recursive: true });
    await sh('mount', ['-t', 'tmpfs', 'tmpfs', join(dir, 'kubelet', 'pods')]);

    // And a bridge and cgroup root of a run killed before its ledger named them.
    const strayBridge = `${BRIDGE_PREFIX}${suffix()}`;
    const strayCgroup = `${CGROUP_PREFIX}${suffix()}`;
    await createBridge(strayBridge, '10.244.251.1/24');
    await createCgroupRoot(strayCgroup);
    const strayContainer = sleeper();
    await once(strayContainer, 'spawn');
    await writeFile(`/sys/fs/cgroup/memory/${strayCgroup}/cgroup.procs`, String(strayContainer.pid));

    const exits = [component, container, strayContainer].map((p) => once(p, 'exit'));
    try {
      const { reclaimed, live } = await reclaimAbandonedRuns();
      assert.ok(reclaimed.runs.includes(dir), `reclaimed runs: ${reclaimed.runs}`);
      assert.ok(!live.some((l) => l.dir === dir));
      assert.deepEqual(
        (await Promise.all(exits)).map(([, signal]) => signal),
        ['SIGKILL', 'SIGKILL', 'SIGKILL'],
      );
      assert.deepEqual(await mountsUnder(dir), []);
      assert.equal(existsSync(dir), false, 'run directory removed');
      assert.equal(await linkExists(bridge), false, 'bridge removed');
      assert.equal(await linkExists(strayBridge), false, 'stray bridge removed');
      assert.ok(reclaimed.bridges.includes(strayBridge));
      assert.equal(existsSync(`/sys/fs/cgroup/memory/${cgroupRoot}`), false, 'cgroup root removed');
      assert.equal(existsSync(`/sys/fs/cgroup/memory/${strayCgroup}`), false, 'stray cgroup root removed');
      if (unified) assert.equal(existsSync(join(UNIFIED, cgroupRoot)), false, 'cgroup v2 root removed');
      assert.equal((await readFile(PANIC, 'utf8')).trim(), panicBefore, 'sysctl put back');
    } finally {
      for (const p of [component, container, strayContainer]) p.kill('SIGKILL');
      await writeFile(PANIC, panicBefore);
      await sh('umount', ['-l', join(dir, 'kubelet', 'pods')]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      for (const b of [bridge, strayBridge]) await deleteBridge(b);
      for (const c of [cgroupRoot, strayCgroup]) await removeCgroupRoot(c);
    }
  });

  test('a run whose process is alive is left alone, and a new run is refused with who holds the machine', async () => {
    const dir = await mkdtemp(RUN_DIR_PREFIX);
    const bridge = `${BRIDGE_PREFIX}${suffix()}`;
    try {
      const ledger = await Ledger.create(dir);
      await ledger.record({ bridge });
      await createBridge(bridge, '10.244.252.1/24');
      await assert.rejects(claimHost(), {
        message: `another node run is alive on this machine: process ${process.pid}, directory ${dir}`,
      });
      assert.equal(existsSync(dir), true, 'the live run keeps its directory');
      assert.equal(await linkExists(bridge), true, 'the live run keeps its bridge');
    } finally {
      await rm(dir, { recursive: true, force: true });
      await deleteBridge(bridge);
    }
  });
});
