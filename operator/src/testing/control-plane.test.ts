// Smoke test of the test control plane: a real etcd and kube-apiserver on loopback, driven
// with the real kubectl. Skips (naming the build command) when the binaries are not in
// the cache; build them with e2e/controlplane/build.sh.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { type ControlPlane, skipUnlessBuilt, startControlPlane } from './control-plane.ts';

const execFileAsync = promisify(execFile);
const skip = skipUnlessBuilt(['kube-apiserver', 'etcd', 'kubectl']);
if (skip) console.log(`# SKIP control plane: ${skip}`);

/** PIDs of processes whose command line mentions `pattern` (pgrep exits 1 for none). */
async function pgrep(pattern: string): Promise<number[]> {
  try {
    const { stdout } = await execFileAsync('pgrep', ['-f', pattern]);
    return stdout.split('\n').filter(Boolean).map(Number);
  } catch (err: unknown) {
    if ((err as { code?: number }).code === 1) return [];
    throw err;
  }
}

// The skip is on each test rather than the suite so that the runner counts them as skipped.
describe('control plane (etcd + kube-apiserver on loopback)', { timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let stopped = false;

  before(async () => {
    if (!skip) cp = await startControlPlane();
  });
  after(async () => {
    if (!stopped) await cp?.stop();
  });

  it('serves kubectl get namespaces as the admin', { skip }, async () => {
    const { stdout } = await cp.kubectl(['get', 'namespaces', '-o', 'name']);
    const names = stdout.split('\n').filter(Boolean);
    for (const ns of ['namespace/default', 'namespace/kube-system', 'namespace/kube-public']) {
      assert.ok(names.includes(ns), `${ns} in ${stdout}`);
    }
    const version = JSON.parse((await cp.kubectl(['version', '-o', 'json'])).stdout) as {
      serverVersion?: { gitVersion?: string };
    };
    assert.match(version.serverVersion?.gitVersion ?? '', /^v1\.\d+\.\d+$/);
  });

  it('applies a ConfigMap and reads it back', { skip }, async () => {
    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'smoke', namespace: 'default' },
      data: { hello: 'world' },
    });
    const applied = await cp.kubectl(['apply', '-f', '-'], { input: manifest });
    assert.match(applied.stdout, /configmap\/smoke (created|configured)/);
    const { stdout } = await cp.kubectl(['get', 'configmap', 'smoke', '-n', 'default', '-o', 'json']);
    assert.equal((JSON.parse(stdout) as { data: Record<string, string> }).data.hello, 'world');
  });

  it('enforces RBAC for a client-certificate user and for a ServiceAccount token', { skip }, async () => {
    const user = await cp.kubeconfigFor({ user: 'alice', groups: ['sluice-testers'] });
    await assert.rejects(
      cp.kubectl(['get', 'configmaps', '-n', 'default'], { kubeconfig: user }),
      /Forbidden|forbidden/,
    );
    const sa = await cp.serviceAccountKubeconfig('default', 'smoke-reader');
    await assert.rejects(cp.kubectl(['get', 'configmaps', '-n', 'default'], { kubeconfig: sa }), /forbidden/);

    await cp.kubectl([
      'create',
      'role',
      'cm-reader',
      '-n',
      'default',
      '--verb=get,list',
      '--resource=configmaps',
    ]);
    await cp.kubectl([
      'create',
      'rolebinding',
      'cm-reader',
      '-n',
      'default',
      '--role=cm-reader',
      '--group=sluice-testers',
      '--serviceaccount=default:smoke-reader',
    ]);
    // RBAC changes take effect on the next request (the authorizer reads from its cache).
    for (const kubeconfig of [user, sa]) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          const { stdout } = await cp.kubectl(['get', 'configmap', 'smoke', '-n', 'default', '-o', 'name'], {
            kubeconfig,
          });
          assert.equal(stdout.trim(), 'configmap/smoke');
          break;
        } catch (err: unknown) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
    const whoami = JSON.parse(
      (await cp.kubectl(['auth', 'whoami', '-o', 'json'], { kubeconfig: sa })).stdout,
    ) as {
      status: { userInfo: { username: string } };
    };
    assert.equal(whoami.status.userInfo.username, 'system:serviceaccount:default:smoke-reader');
    // Still no write access.
    await assert.rejects(
      cp.kubectl(['delete', 'configmap', 'smoke', '-n', 'default'], { kubeconfig: user }),
      /forbidden/,
    );
  });

  it('stops etcd and kube-apiserver and leaves no process or directory behind', { skip }, async () => {
    const { dir, pids } = cp;
    assert.equal(
      (await pgrep(dir)).length,
      2,
      'etcd and kube-apiserver run with the temp dir in their flags',
    );
    await cp.stop();
    stopped = true;
    assert.deepEqual(await pgrep(dir), []);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
    assert.equal(existsSync(dir), false);
  });
});

describe('a test process killed with SIGKILL', { timeout: 300_000 }, () => {
  it('takes its etcd and kube-apiserver with it (they run under a parent-death signal)', {
    skip,
  }, async () => {
    const module = new URL('./control-plane.ts', import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [
        '-e',
        `import(${JSON.stringify(module)}).then(async (m) => {
          const cp = await m.startControlPlane();
          process.stdout.write(JSON.stringify({ dir: cp.dir }) + '\\n');
          setInterval(() => {}, 1e9);
        });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const { dir } = JSON.parse(line) as { dir: string };
    try {
      assert.equal((await pgrep(dir)).length, 2, 'etcd and kube-apiserver started');
      child.kill('SIGKILL');
      await waitFor('etcd and kube-apiserver gone', async () => (await pgrep(dir)).length === 0, {
        timeoutMs: 10_000,
        intervalMs: 100,
        detail: async () => `still running: ${(await pgrep(dir)).join(', ')}`,
      });
    } finally {
      child.kill('SIGKILL');
      for (const pid of await pgrep(dir)) process.kill(pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
