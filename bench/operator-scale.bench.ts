// The operator at ISP scale, against a real kube-apiserver and etcd (the control plane
// `make controlplane` builds): one RelayPolicy with N SmtpUsers, each with its own
// password Secret. Most Secrets hold a hash (so the run measures the operator, not
// scrypt); PLAIN users have plain passwords, which the operator hashes.
//
//   node bench/operator-scale.bench.ts            # 10,000 and 30,000 users
//   node bench/operator-scale.bench.ts --full     # 10,000 and 100,000 users (about an hour on 2 cores)
//   node bench/operator-scale.bench.ts --quick    # 1,000 users: checks the harness
//   --sizes=N,M  --operator-heap=MB (the operator's V8 old space)  --heap-snapshot=DIR
//   --operator-memory=MiB  --operator-env=K=V  --operator-log=FILE
//
// Measured per size, from the operator's own /metrics (a child process, as deployed):
// cold start to every user in the users shards and Ready; a restart to steady state and
// the writes and hashes it made (target: none); the writes and the time from one
// password Secret change to the rewritten shard; the writes of one new user; the
// operator's resident memory; and the relay's re-read of all shards after one changed.
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeClient, KubeObject } from '@sluice/operator/kube-client';
import { SECRETS, SMTP_USERS } from '@sluice/operator/kube-resources';
import { startApiServer } from '@sluice/operator/testing/api-server';
import { loadUsersFile } from '@sluice/relay/config-load';
import { hashPassword } from '@sluice/relay/password';
import { type WaitForOptions, waitFor } from '@sluice/relay/testing/wait-for';

const HERE = dirname(fileURLToPath(import.meta.url));
// the entry point's path, for a child process (resolving it does not load it)
const OPERATOR_MAIN = fileURLToPath(import.meta.resolve('@sluice/operator/main'));
const RESULTS = join(HERE, 'results', 'operator-scale.md');
const NS = 'bench';
const PLAIN = 100;
const CREATE_CONCURRENCY = 32;

const args = process.argv.slice(2);
const sizesArg = args.find((a) => a.startsWith('--sizes='));
/** --operator-heap=MB: the operator's V8 old-space limit (what NODE_OPTIONS would set in its Deployment) */
const heapArg = args.find((a) => a.startsWith('--operator-heap='))?.slice('--operator-heap='.length);
/**
 * --operator-memory=MiB: the operator runs in a memory cgroup with this limit, as its
 * Deployment's `resources.limits.memory` puts it (root only); the report gives the
 * cgroup's peak usage and OOM kills. Without it, the operator's peak resident memory.
 */
const memoryArg = args.find((a) => a.startsWith('--operator-memory='))?.slice('--operator-memory='.length);
/** NAME=VALUE, repeatable: more environment for the operator (e.g. MALLOC_ARENA_MAX=2) */
const extraEnv = Object.fromEntries(
  args
    .filter((a) => a.startsWith('--operator-env='))
    .map((a) => {
      const kv = a.slice('--operator-env='.length);
      const eq = kv.indexOf('=');
      return [kv.slice(0, eq), kv.slice(eq + 1)];
    }),
);
/** --operator-log=FILE: the operators' log lines go to FILE (with --operator-env=LOG_LEVEL=debug, each write) */
const logFile = args.find((a) => a.startsWith('--operator-log='))?.slice('--operator-log='.length);
/** --heap-snapshot=DIR: a heap snapshot of the operator at steady state goes to DIR (to see where its memory is) */
const snapshotDir = args.find((a) => a.startsWith('--heap-snapshot='))?.slice('--heap-snapshot='.length);
const SIZES = sizesArg
  ? sizesArg
      .slice('--sizes='.length)
      .split(',')
      .map((n) => Number(n))
  : args.includes('--quick')
    ? [1000]
    : args.includes('--full')
      ? [10_000, 100_000]
      : [10_000, 30_000];

/** The heap share and semi-space size the chart gives the operator (`operator.heapPercent`, `operator.semiSpaceMiB`), read from its values. */
const [CHART_HEAP_PERCENT, CHART_SEMI_SPACE_MIB] = (() => {
  const values = readFileSync(join(HERE, '..', 'charts', 'sluice', 'values.yaml'), 'utf8');
  return ['heapPercent', 'semiSpaceMiB'].map((field) => {
    const m = new RegExp(`^ {2}${field}: (\\d+)`, 'm').exec(values);
    if (!m?.[1]) throw new Error(`operator.${field} not found in charts/sluice/values.yaml`);
    return Number(m[1]);
  });
})();

/** A memory cgroup for the operator (v2 where the machine has it, else v1's memory controller). */
interface MemoryCgroup {
  dir: string;
  /** the most it has used since it was made, in bytes */
  peak(): Promise<number>;
  /** how often the kernel killed a process in it for memory */
  oomKills(): Promise<number>;
  remove(): Promise<void>;
}

async function memoryCgroup(limitMiB: number): Promise<MemoryCgroup> {
  const name = `sluice-bench-operator-${process.pid}`;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const dir = v2 ? join('/sys/fs/cgroup', name) : join('/sys/fs/cgroup/memory', name);
  await mkdir(dir);
  const bytes = String(limitMiB * 2 ** 20);
  await writeFile(join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), bytes);
  if (v2) await writeFile(join(dir, 'memory.swap.max'), '0');
  const read = async (file: string) => readFile(join(dir, file), 'utf8');
  return {
    dir,
    peak: async () => Number(await read(v2 ? 'memory.peak' : 'memory.max_usage_in_bytes')),
    oomKills: async () =>
      Number(/oom_kill (\d+)/.exec(await read(v2 ? 'memory.events' : 'memory.oom_control'))?.[1] ?? 0),
    remove: () => rmdir(dir).catch(() => undefined),
  };
}

let cgroup: MemoryCgroup | undefined;

interface Operator {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
  stop(): Promise<void>;
}

async function startOperator(kubeconfig: string): Promise<Operator> {
  const options = {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      KUBECONFIG: kubeconfig,
      LEADER_ELECT: 'false',
      WATCH_NAMESPACE: NS,
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: '0',
      USAGE_INTERVAL_SECONDS: '0',
      LOG_LEVEL: 'info',
      NODE_OPTIONS: [
        // what the chart's Deployment sets, unless a fixed size is asked for
        heapArg ? `--max-old-space-size=${heapArg}` : `--max-old-space-size-percentage=${CHART_HEAP_PERCENT}`,
        `--max-semi-space-size=${CHART_SEMI_SPACE_MIB}`,
        snapshotDir ? `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}` : '',
      ].join(' '),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
  };
  const command = cgroup
    ? // joins the cgroup before it becomes the operator, so every byte it uses is counted
      [
        '/bin/sh',
        '-c',
        `echo $$ > ${join(cgroup.dir, 'cgroup.procs')} && exec "$0" "$1"`,
        process.execPath,
        OPERATOR_MAIN,
      ]
    : [process.execPath, OPERATOR_MAIN];
  // the operator dies with the bench however the bench ends (util-linux's setpriv)
  const child = spawn('/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', ...command], options);
  let stopping = false;
  const exited = new Promise<void>((r) =>
    child.once('exit', (code, signal) => {
      if (!stopping)
        died = `the operator exited (${code ?? signal}${signal === 'SIGKILL' ? ': killed, out of memory?' : ''})`;
      r();
    }),
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const port = await new Promise<number>((ok, fail) => {
    let buffer = '';
    child.stdout?.on('data', (d: Buffer) => {
      if (logFile) appendFileSync(logFile, d);
      buffer += d.toString();
      for (;;) {
        const nl = buffer.indexOf('\n');
        if (nl < 0) break;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = /"adminPort":(\d+)/.exec(line);
        if (m) ok(Number(m[1]));
      }
    });
    child.once('exit', (code, signal) =>
      fail(
        new Error(
          `the operator exited (${code ?? signal}${signal === 'SIGKILL' ? ': killed, out of memory?' : ''}): ${stderr}`,
        ),
      ),
    );
  });
  return {
    child,
    port,
    exited,
    stop: async () => {
      peakResident = Math.max(peakResident, await residentPeak(child.pid));
      stopping = true;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Why the operator stopped on its own, if it did: every wait gives up on it. */
let died: string | undefined;
const DEAD = Symbol('the operator died');

/** waitFor, given up as soon as the operator stops on its own (killed for memory, say). */
async function untilAlive<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  options: WaitForOptions,
): Promise<T> {
  const got = await waitFor(what, async () => (died ? DEAD : check()), options);
  if (got === DEAD) throw new Error(`${died} while waiting for ${what}`);
  return got as T;
}
/** The highest resident memory of the operator processes of this size (VmHWM), in bytes. */
let peakResident = 0;

async function residentPeak(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

async function stopOperator(op: Operator): Promise<void> {
  await op.stop();
}

async function metrics(op: Operator): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${op.port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, space);
    // sum over labels by metric name, and keep the labelled series too
    const base = name.replace(/\{.*\}$/, '');
    const value = Number(line.slice(space + 1));
    out.set(name, value);
    out.set(base, (name === base ? 0 : (out.get(base) ?? 0)) + value);
  }
  return out;
}

const writesOf = (m: Map<string, number>) => m.get('sluice_operator_kube_writes_total') ?? 0;
const hashesOf = (m: Map<string, number>) => m.get('sluice_operator_password_hashes_total') ?? 0;
const rssOf = (m: Map<string, number>) => m.get('process_resident_memory_bytes') ?? 0;
const heapOf = (m: Map<string, number>) => m.get('nodejs_heap_size_used_bytes') ?? 0;

async function inBatches(n: number, make: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += CREATE_CONCURRENCY) {
    await Promise.all(Array.from({ length: Math.min(CREATE_CONCURRENCY, n - i) }, (_, j) => make(i + j)));
  }
}

/** Asks the operator for a heap snapshot (SIGUSR2) and waits until it is written. */
async function heapSnapshot(op: Operator, dir: string): Promise<void> {
  const before = new Set(await readdir(dir));
  op.child.kill('SIGUSR2');
  const file = await waitFor(
    'the heap snapshot',
    async () => (await readdir(dir)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f)),
    { timeoutMs: 600_000 },
  );
  // written when its size stops growing
  let size = -1;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = (await stat(join(dir, file))).size;
    if (now === size) break;
    size = now;
  }
  console.log(`  heap snapshot: ${join(dir, file)}`);
}

interface ShardSecret extends KubeObject {
  data?: Record<string, string>;
}

async function shardUsers(admin: KubeClient): Promise<{ users: number; shards: ShardSecret[] }> {
  const { items } = await admin.list<ShardSecret>(SECRETS, {
    namespace: NS,
    labelSelector: 'sluice.dev/users-shards',
  });
  const newest = Math.max(0, ...items.map((s) => Number(s.metadata.labels?.['sluice.dev/users-shards'])));
  const shards = items.filter((s) => Number(s.metadata.labels?.['sluice.dev/users-shards']) === newest);
  let users = 0;
  for (const s of shards) {
    users +=
      (
        JSON.parse(Buffer.from(s.data?.['users.json'] ?? 'e30=', 'base64').toString()) as {
          users?: unknown[];
        }
      ).users?.length ?? 0;
  }
  return { users, shards };
}

async function readyUsers(admin: KubeClient): Promise<number> {
  const { items } = await admin.list<
    KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }
  >(SMTP_USERS, { namespace: NS });
  return items.filter((u) => u.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
    .length;
}

async function settle(op: Operator, quietMs = 3000): Promise<Map<string, number>> {
  // steady: an empty queue and no write for `quietMs`
  let last = await metrics(op);
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await metrics(op);
    if (writesOf(now) !== writesOf(last) || (now.get('sluice_operator_workqueue_depth') ?? 0) > 0)
      since = Date.now();
    last = now;
    if (Date.now() - since >= quietMs && (now.get('sluice_operator_reconcile_total') ?? 0) > 0) return now;
  }
}

interface Result {
  users: number;
  createSeconds: number;
  coldSeconds: number;
  coldWrites: number;
  coldHashes: number;
  shards: number;
  largestShardBytes: number;
  totalBytes: number;
  restartSeconds: number;
  restartWrites: number;
  restartHashes: number;
  changeWrites: number;
  changeMs: number;
  newUserWrites: number;
  rssMiB: number;
  heapMiB: number;
  /** the cgroup's peak usage with --operator-memory, else the processes' peak resident memory */
  peakMiB: number;
  oomKills: number;
  relayColdMs: number;
  relayReloadMs: number;
  /** why the run stopped early (the operator killed for memory, say); the rest is NaN */
  failure?: string;
}

async function runSize(n: number, hash: string): Promise<Result> {
  const { cp, admin } = await startApiServer();
  died = undefined;
  peakResident = 0;
  cgroup = memoryArg ? await memoryCgroup(Number(memoryArg)) : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'sluice-opscale-'));
  let op: Operator | undefined;
  let createdIn = Number.NaN;
  /** what was measured before the operator died, if it did (the cold start, say) */
  let measured: Partial<Result> = {};
  try {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    const created = performance.now();
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name: 'mail', namespace: NS },
      spec: { hostname: 'relay.example.net', replicas: 1 },
    } as KubeObject);
    const total = n;
    await inBatches(total, async (i) => {
      const plain = i < PLAIN;
      await admin.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: `user-${i}-pw`, namespace: NS },
        stringData: { password: plain ? `plain password ${i}` : hash },
      } as KubeObject);
      await admin.create({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'SmtpUser',
        metadata: { name: `user-${i}`, namespace: NS },
        spec: {
          username: `user-${i}@customer-${i % 997}.example`,
          policyRef: { name: 'mail' },
          passwordSecretRef: { name: `user-${i}-pw` },
          allowedSenders: [`@customer-${i % 997}.example`],
        },
      } as KubeObject);
    });
    const createSeconds = (performance.now() - created) / 1000;
    createdIn = createSeconds;
    console.log(`  ${n} users created in ${createSeconds.toFixed(0)} s`);

    // cold start
    const coldStart = performance.now();
    op = await startOperator(cp.kubeconfigPath);
    const deadline = 3_600_000;
    await untilAlive('every user in the shards', async () => (await shardUsers(admin)).users === total + 1, {
      timeoutMs: deadline,
      intervalMs: 2000,
    });
    await untilAlive('every SmtpUser Ready', async () => (await readyUsers(admin)) === total, {
      timeoutMs: deadline,
      intervalMs: 2000,
    });
    const coldSeconds = (performance.now() - coldStart) / 1000;
    const cold = await settle(op);
    const { shards } = await shardUsers(admin);
    const sizes = shards.map((s) => Buffer.from(s.data?.['users.json'] ?? '', 'base64').length);
    console.log(
      `  cold start ${coldSeconds.toFixed(1)} s, ${writesOf(cold)} writes, ${shards.length} shards`,
    );
    const coldResult = {
      coldSeconds,
      coldWrites: writesOf(cold),
      coldHashes: hashesOf(cold),
      shards: shards.length,
      largestShardBytes: Math.max(...sizes),
      totalBytes: sizes.reduce((a, b) => a + b, 0),
    };
    measured = coldResult;

    // restart
    await stopOperator(op);
    const restarted = performance.now();
    op = await startOperator(cp.kubeconfigPath);
    await untilAlive('ready', async () => (await fetch(`http://127.0.0.1:${op?.port}/readyz`)).ok, {
      timeoutMs: deadline,
      intervalMs: 200,
    });
    const steady = await settle(op);
    const restartSeconds = (performance.now() - restarted) / 1000 - 3;
    console.log(
      `  restart ${restartSeconds.toFixed(1)} s, ${writesOf(steady)} writes, ${hashesOf(steady)} hashes`,
    );

    // one password change: time to the rewritten shard, and writes
    const before = await metrics(op);
    const shardOf = async () => {
      for (const s of (await shardUsers(admin)).shards) {
        const text = Buffer.from(s.data?.['users.json'] ?? '', 'base64').toString();
        const m = /"username":"user-1@customer-1\.example","passwordHash":"([^"]+)"/.exec(text);
        if (m?.[1]) return { name: s.metadata.name, hash: m[1] };
      }
      return undefined;
    };
    const old = await shardOf();
    if (!old) throw new Error('user-1 not found in the shards');
    const changedAt = performance.now();
    await admin.apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'user-1-pw', namespace: NS },
      stringData: { password: 'a new password' },
    } as KubeObject);
    await untilAlive(
      'the rewritten shard',
      async () => {
        const s = await admin.get<ShardSecret>('v1', 'Secret', NS, old.name);
        return !Buffer.from(s?.data?.['users.json'] ?? '', 'base64')
          .toString()
          .includes(old.hash);
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    const changeMs = performance.now() - changedAt;
    const afterChange = await settle(op);
    const changeWrites = writesOf(afterChange) - writesOf(before);

    // one new user
    await admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'newcomer-pw', namespace: NS },
      stringData: { password: hash },
    } as KubeObject);
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SmtpUser',
      metadata: { name: 'newcomer', namespace: NS },
      spec: {
        username: 'newcomer@example.net',
        policyRef: { name: 'mail' },
        passwordSecretRef: { name: 'newcomer-pw' },
      },
    } as KubeObject);
    await untilAlive(
      'the newcomer Ready',
      async () => {
        const u = await admin.get<
          KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }
        >('sluice.dev/v1alpha1', 'SmtpUser', NS, 'newcomer');
        return u?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const afterNew = await settle(op);
    if (snapshotDir) await heapSnapshot(op, snapshotDir);
    const newUserWrites = writesOf(afterNew) - writesOf(afterChange);

    // the relay's side: every shard read once, then again after one shard changed
    const files = (await shardUsers(admin)).shards;
    const usersDir = join(dir, 'users');
    await rm(usersDir, { recursive: true, force: true });
    await mkdir(usersDir);
    for (const [i, s] of files.entries()) {
      await writeFile(join(usersDir, `users-${i}.json`), Buffer.from(s.data?.['users.json'] ?? '', 'base64'));
    }
    let t = performance.now();
    await loadUsersFile(usersDir);
    const relayColdMs = performance.now() - t;
    const first = Buffer.from(files[0]?.data?.['users.json'] ?? '', 'base64').toString();
    await writeFile(join(usersDir, 'users-0.json'), first.replace('"suspended":false', '"suspended":true'));
    t = performance.now();
    await loadUsersFile(usersDir);
    const relayReloadMs = performance.now() - t;

    return {
      users: n,
      createSeconds,
      ...coldResult,
      restartSeconds,
      restartWrites: writesOf(steady),
      restartHashes: hashesOf(steady),
      changeWrites,
      changeMs,
      newUserWrites,
      rssMiB: rssOf(afterNew) / 2 ** 20,
      heapMiB: heapOf(afterNew) / 2 ** 20,
      peakMiB:
        (cgroup ? await cgroup.peak() : Math.max(peakResident, await residentPeak(op.child.pid))) / 2 ** 20,
      oomKills: (await cgroup?.oomKills()) ?? 0,
      relayColdMs,
      relayReloadMs,
    };
  } catch (err: unknown) {
    // a request cut off by the operator's death can fail before its exit is seen
    if (!died && op) await Promise.race([op.exited, new Promise((r) => setTimeout(r, 2000))]);
    if (!died) throw err;
    // the operator stopped on its own: that is the result for this size
    console.log(`  ${(err as Error).message}`);
    const nan = Number.NaN;
    return {
      users: n,
      createSeconds: createdIn,
      ...Object.fromEntries(
        [
          'coldSeconds',
          'coldWrites',
          'coldHashes',
          'shards',
          'largestShardBytes',
          'totalBytes',
          'restartSeconds',
          'restartWrites',
          'restartHashes',
          'changeWrites',
          'changeMs',
          'newUserWrites',
          'rssMiB',
          'heapMiB',
          'relayColdMs',
          'relayReloadMs',
        ].map((k) => [k, nan]),
      ),
      ...measured,
      peakMiB: (cgroup ? await cgroup.peak() : peakResident) / 2 ** 20,
      oomKills: (await cgroup?.oomKills()) ?? 0,
      failure: `${died}: ${(err as Error).message}`,
    } as Result;
  } finally {
    if (op) await stopOperator(op);
    await cp.stop();
    await cgroup?.remove();
    await rm(dir, { recursive: true, force: true });
  }
}

function report(results: Result[], load: string): string {
  // a run that stopped early has no number for what it did not reach
  const cell = (r: Result, text: string) => (r.failure && text.includes('NaN') ? '–' : text);
  const row = (label: string, f: (r: Result) => string) =>
    `| ${label} | ${results.map((r) => cell(r, f(r))).join(' | ')} |`;
  return [
    '# Operator at scale',
    '',
    `One RelayPolicy, N SmtpUsers each with its own password Secret (${PLAIN} plain passwords, the rest hashes), a real kube-apiserver and etcd on this machine, the operator as a child process; numbers from its /metrics; operator run with ${heapArg ? `--max-old-space-size=${heapArg}` : `--max-old-space-size-percentage=${CHART_HEAP_PERCENT} (as the chart runs it)`} --max-semi-space-size=${CHART_SEMI_SPACE_MIB}${memoryArg ? ` in a memory cgroup of ${memoryArg} MiB` : ''}${
      Object.keys(extraEnv).length
        ? `, ${Object.entries(extraEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`
        : ''
    }. Load average at the start: ${load}.`,
    '',
    `| | ${results.map((r) => `${r.users.toLocaleString('en')} users`).join(' | ')} |`,
    `| --- | ${results.map(() => '---').join(' | ')} |`,
    row('objects created by the bench (s)', (r) => r.createSeconds.toFixed(0)),
    row('cold start to every user in the shards and Ready (s)', (r) => r.coldSeconds.toFixed(1)),
    row('cold start: API writes / passwords hashed', (r) => `${r.coldWrites} / ${r.coldHashes}`),
    row(
      'shards; largest; all (users file bytes)',
      (r) =>
        `${r.shards}; ${(r.largestShardBytes / 1024).toFixed(0)} KiB; ${(r.totalBytes / 2 ** 20).toFixed(1)} MiB`,
    ),
    row('restart to steady state (s)', (r) => r.restartSeconds.toFixed(1)),
    row('restart: API writes / passwords hashed', (r) => `${r.restartWrites} / ${r.restartHashes}`),
    row('one password change: API writes', (r) => String(r.changeWrites)),
    row('one password change: Secret change to rewritten shard (ms)', (r) => r.changeMs.toFixed(0)),
    row('one new user: API writes', (r) => String(r.newUserWrites)),
    row(
      memoryArg
        ? `operator memory: peak of its ${memoryArg} MiB cgroup; OOM kills`
        : 'operator memory: peak resident (MiB)',
      (r) => (memoryArg ? `${r.peakMiB.toFixed(0)}; ${r.oomKills}` : r.peakMiB.toFixed(0)),
    ),
    row(
      'operator memory at the end: resident / V8 heap used (MiB)',
      (r) => `${r.rssMiB.toFixed(0)} / ${r.heapMiB.toFixed(0)}`,
    ),
    row('relay: read every shard (ms)', (r) => r.relayColdMs.toFixed(0)),
    row('relay: re-read after one shard changed (ms)', (r) => r.relayReloadMs.toFixed(0)),
    ...(results.some((r) => r.failure) ? [row('stopped early', (r) => r.failure ?? '')] : []),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const load = loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const hash = await hashPassword('bench password');
  const results: Result[] = [];
  for (const n of SIZES) {
    console.log(`operator-scale: ${n} users`);
    results.push(await runSize(n, hash));
  }
  const text = report(results, load);
  await writeFile(RESULTS, text);
  console.log(text);
}

await main();
