// Benchmark entry (not a test): Sluice side by side with Haraka and Postfix on loopback,
// each given the same policy as far as it can express it, under the same load generator,
// delivering to the same sink; plus the client-to-sink ceiling in the same run. Runs
// alternate between the systems (A/B/C then C/B/A …) and the report gives medians.
//   node bench/compare.bench.ts            the full run (about 20 minutes on 2 cores)
//   node bench/compare.bench.ts --quick    a few seconds per system, to check the harness
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Context, startEnvironment } from './environment.ts';
import { runLoad, SmtpConnection } from './loadgen.ts';
import { startFloor } from './peers/floor.ts';
import { ensureHaraka, startHaraka } from './peers/haraka.ts';
import { POLICY } from './peers/peer.ts';
import { ensurePostfix, startPostfix } from './peers/postfix.ts';
import { startSluice, startSluiceReplicas } from './peers/sluice.ts';
import { type ProbeResult, probePolicy } from './policy-probe.ts';
import { flushAll } from './redis-admin.ts';
import { type MachineInfo, PODS, renderReport, type SyncCount } from './report.ts';
import {
  awaitArrival,
  clientAddress,
  type RunRecord,
  runOne,
  type SystemSpec,
  type Workload,
} from './run-one.ts';
import { countSyncCalls } from './syscall-count.ts';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 3;
const OUTPUT = new URL(QUICK ? './results/compare-quick.tmp' : './results/compare.md', import.meta.url);
const RAW = new URL(QUICK ? './results/compare-quick.json.tmp' : './results/compare.json', import.meta.url);

// ---- workloads (the issue's defaults: 20 connections × 50 messages × 3 recipients) ----
const scale = (full: number, quick: number) => (QUICK ? quick : full);
const small: Workload = {
  key: 'small',
  label: '10 KB, 3 rcpts, pipelining',
  connections: scale(20, 4),
  messages: scale(50, 5),
  recipients: 3,
  bytes: 10_000,
  pipelining: true,
  starttls: false,
};
const workloads = {
  small,
  smallNoPipe: { ...small, key: 'small-nopipe', label: '10 KB, 3 rcpts, no pipelining', pipelining: false },
  smallTls: { ...small, key: 'small-tls', label: '10 KB, 3 rcpts, pipelining, STARTTLS', starttls: true },
  medium: {
    ...small,
    key: 'medium',
    label: '1 MB, 3 rcpts, pipelining',
    messages: scale(10, 2),
    bytes: 1_000_000,
  },
  large: {
    ...small,
    key: 'large',
    label: '30 MB, 3 rcpts, 10 concurrent',
    connections: scale(10, 2),
    messages: 1,
    bytes: scale(30_000_000, 5_000_000),
  },
  manyClients: {
    ...small,
    key: 'many-clients',
    label: '10 KB, 3 rcpts, each connection from its own IP (10 messages each)',
    connections: scale(20, 4),
    connectionsPerWorker: scale(5, 2),
    messages: scale(10, 3),
    manyClients: true,
  },
} satisfies Record<string, Workload>;

// ---- systems ----
interface SluiceVariant {
  state: 'memory' | 'redis';
  groupCommit: boolean;
  /** Instances sharing Redis, as pods behind a Service (default 1). */
  replicas?: number;
}
function sluice(
  key: string,
  label: string,
  variant: SluiceVariant,
  prepare?: SystemSpec['prepare'],
): SystemSpec {
  return {
    key,
    label,
    start: async (ctx, workDir) => {
      await flushAll(ctx.redisPort); // every run starts from empty shared state and caches
      const options = {
        ...peerOptions(ctx, workDir),
        state: variant.state,
        redisNodes: [`127.0.0.1:${ctx.redisPort}`],
        dnsbl: ctx.dns.address,
        groupCommit: variant.groupCommit,
      };
      const replicas = variant.replicas ?? 1;
      return replicas === 1 ? startSluice(options) : startSluiceReplicas(options, replicas);
    },
    ...(prepare ? { prepare } : {}),
  };
}
const peerOptions = (ctx: Context, workDir: string) => ({
  workDir,
  sinkPort: ctx.sink.port,
  certFile: ctx.certFile,
  keyFile: ctx.keyFile,
  user: ctx.user,
  password: ctx.password,
  ...(ctx.dns.port === 53 ? { dnsblNameserver: ctx.dns.address.split(':')[0] } : {}),
});

/** Connects once from every client address of the workload (greeting, QUIT): DNSBL answers get cached. */
async function primeClients(_ctx: Context, peer: { port: number }, workload: Workload): Promise<void> {
  for (let w = 0; w < workload.connections; w++) {
    for (let k = 0; k < (workload.connectionsPerWorker ?? 1); k++) {
      const c = await SmtpConnection.connect(peer.port, '127.0.0.1', clientAddress(w, k), 10_000);
      await c.reply();
      c.close();
    }
  }
}

const FULL = { state: 'redis', groupCommit: true } as const;
const systems = {
  ceiling: { key: 'ceiling', label: 'client → sink (ceiling)' } satisfies SystemSpec,
  sluice: sluice('sluice', 'Sluice', FULL),
  sluicePods: sluice(PODS, 'Sluice ×2 (two pods sharing Redis)', { ...FULL, replicas: 2 }),
  sluiceMemory: sluice('sluice-memory', 'Sluice, in-memory state', { state: 'memory', groupCommit: true }),
  sluiceNoGroupCommit: sluice('sluice-no-gc', 'Sluice, group commit off', {
    state: 'redis',
    groupCommit: false,
  }),
  sluiceCold: sluice('sluice-dnsbl-cold', 'Sluice, DNSBL cache cold', FULL),
  sluiceWarm: sluice('sluice-dnsbl-warm', 'Sluice, DNSBL cache warm', FULL, primeClients),
  haraka: {
    key: 'haraka',
    label: 'Haraka',
    start: (ctx, workDir) => startHaraka({ ...peerOptions(ctx, workDir), senderDomain: 'bench.test' }),
  } satisfies SystemSpec,
  // smtp-server in, nodemailer out, nothing between (bench/floor-relay.ts): what the SMTP
  // libraries alone allow, without and with an fsync per message
  floor: {
    key: 'floor',
    label: 'library floor (no checks, no spool)',
    start: (ctx, workDir) => startFloor({ ...peerOptions(ctx, workDir), durable: false }),
  } satisfies SystemSpec,
  floorDurable: {
    key: 'floor-durable',
    label: 'library floor + fsync per message',
    start: (ctx, workDir) => startFloor({ ...peerOptions(ctx, workDir), durable: true }),
  } satisfies SystemSpec,
  postfix: {
    key: 'postfix',
    label: 'Postfix',
    start: (ctx, workDir) => startPostfix(peerOptions(ctx, workDir)),
  } satisfies SystemSpec,
  // Postfix slows clients down for up to in_flow_delay (1 s) per message while its queue
  // manager lags; with 0 it never does, which is Postfix at its fastest here.
  postfixNoFlowDelay: {
    key: 'postfix-no-flow-delay',
    label: 'Postfix, in_flow_delay = 0',
    start: (ctx, workDir) => startPostfix(peerOptions(ctx, workDir), { in_flow_delay: '0' }),
  } satisfies SystemSpec,
};

export interface Group {
  title: string;
  workload: Workload;
  systems: SystemSpec[];
}
const peers = [systems.sluice, systems.haraka, systems.postfix];
// Sluice scales out by pods; two processes sharing Redis is what two pods on this box are
const peersAndPods = [systems.sluice, systems.sluicePods, systems.haraka, systems.postfix];
const groups: Group[] = [
  {
    title: 'Small messages',
    workload: workloads.small,
    systems: [
      systems.ceiling,
      systems.floor,
      systems.floorDurable,
      ...peersAndPods,
      systems.postfixNoFlowDelay,
    ],
  },
  { title: 'Small messages, no pipelining', workload: workloads.smallNoPipe, systems: peers },
  { title: 'Small messages over STARTTLS', workload: workloads.smallTls, systems: peersAndPods },
  { title: 'Medium messages', workload: workloads.medium, systems: [systems.ceiling, ...peersAndPods] },
  { title: 'Large messages (memory watched)', workload: workloads.large, systems: peers },
  {
    title: 'Sluice: Redis vs in-memory state',
    workload: workloads.small,
    systems: [systems.sluice, systems.sluiceMemory],
  },
  {
    title: 'Sluice: group commit on vs off',
    workload: workloads.small,
    systems: [systems.sluice, systems.sluiceNoGroupCommit],
  },
  {
    title: 'Sluice: DNSBL cache cold vs warm',
    workload: workloads.manyClients,
    systems: [systems.sluiceCold, systems.sluiceWarm],
  },
];

// ---- raw results: kept beside the report, so it can be rendered again without a run ----
interface RawResults {
  machine: MachineInfo;
  records: RunRecord[];
  probes: Array<[string, ProbeResult[]]>;
  syncCounts: Array<Omit<SyncCount, 'calls'> & { calls: Array<[string, number]> }>;
}
const render = (raw: RawResults) =>
  renderReport({
    machine: raw.machine,
    groups,
    records: raw.records,
    probes: new Map(raw.probes),
    syncCounts: raw.syncCounts.map((c) => ({ ...c, calls: new Map(c.calls) })),
    systems: Object.values(systems),
  });
if (process.argv.includes('--render')) {
  // node bench/compare.bench.ts --render: compare.md again from compare.json
  const raw = JSON.parse(await readFile(RAW, 'utf8')) as RawResults;
  await writeFile(OUTPUT, render(raw));
  process.stdout.write(`report: ${OUTPUT.pathname}\n`);
  process.exit(0);
}

// ---- set-up ----
const log = (line: string) => process.stderr.write(`${line}\n`);
const loadBefore = os.loadavg();
const versions = {
  haraka: await ensureHaraka(),
  postfix: await ensurePostfix(),
  redis: /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?',
};
// the working tree may be in use by others while this runs: say which code was measured
const git = (...args: string[]) =>
  execFileSync('git', ['-C', fileURLToPath(new URL('..', import.meta.url)), ...args], {
    encoding: 'utf8',
  }).trim();
const changed = git('status', '--porcelain', '--', 'relay').split('\n').filter(Boolean).length;
const sluiceCode = `commit ${git('rev-parse', '--short', 'HEAD')}${changed ? ` + ${changed} uncommitted files under relay/ (at the start)` : ''}`;
const ctx = await startEnvironment();
const { sink, tmpRoot } = ctx;

const records: RunRecord[] = [];
const probes = new Map<string, ProbeResult[]>();
const syncCounts: SyncCount[] = [];
const started = new Date();
const machine = (): MachineInfo => ({
  cpu: os.cpus()[0]?.model ?? '?',
  cores: os.cpus().length,
  memoryGiB: os.totalmem() / 2 ** 30,
  kernel: `${os.type()} ${os.release()}`,
  node: process.version,
  ...versions,
  loadBefore,
  loadAfter: os.loadavg(),
  started: started.toISOString(),
  minutes: (Date.now() - started.getTime()) / 60_000,
  quick: QUICK,
  rounds: ROUNDS,
  sluiceCode,
});
const write = async () => {
  const raw: RawResults = {
    machine: machine(),
    records,
    probes: [...probes],
    syncCounts: syncCounts.map((c) => ({ ...c, calls: [...c.calls] })),
  };
  await writeFile(RAW, `${JSON.stringify(raw, null, 1)}\n`);
  await writeFile(OUTPUT, render(raw));
};

try {
  // ---- what each system really enforces ----
  for (const system of peers) {
    const workDir = await mkdtemp(join(tmpRoot, `probe-${system.key}-`));
    const peer = await system.start?.(ctx, workDir);
    if (!peer) continue;
    probes.set(
      system.key,
      await probePolicy(peer.port, { user: ctx.user, password: ctx.password }, POLICY.maxRecipients),
    );
    await peer.stop();
    log(
      `policy probe ${system.label}: ${probes
        .get(system.key)
        ?.map((p) => (p.enforced ? '✓' : '✗'))
        .join(' ')}`,
    );
  }

  // ---- timed runs, alternating ----
  for (const group of groups) {
    log(`== ${group.title} (${group.workload.label})`);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? group.systems : [...group.systems].reverse();
      for (const system of order) {
        const r = await runOne(ctx, group.title, group.workload, system, round);
        records.push(r);
        log(
          `  ${system.label.padEnd(28)} round ${round + 1}: ${r.msgsPerSecond.toFixed(0).padStart(5)} msgs/s  p99 ${r.p99.toFixed(1)} ms  peak ${(r.hwmSumKb / 1024).toFixed(0)} MiB  cpu ${r.cpuMsPerMessage.system.toFixed(2)} ms/msg  ${r.failure ?? 'ok'}`,
        );
      }
    }
    await write();
  }

  // ---- fsync-family calls per message (strace attached: a separate, untimed pass) ----
  for (const system of [systems.sluice, systems.sluiceNoGroupCommit, systems.haraka, systems.postfix]) {
    const workDir = await mkdtemp(join(tmpRoot, `sync-${system.key}-`));
    const peer = await system.start?.(ctx, workDir);
    if (!peer) continue;
    await sink.reset();
    const counter = await countSyncCalls(peer.pids());
    const load = await runLoad({
      port: peer.port,
      connections: small.connections,
      messagesPerConnection: scale(10, 3),
      recipients: 3,
      messageBytes: small.bytes,
      pipelining: true,
      starttls: false,
      auth: { user: ctx.user, password: ctx.password },
      runId: `sync.${system.key}`,
    });
    const missing = await awaitArrival(sink, load.accepted, 60_000);
    const calls = await counter.stop();
    await peer.stop();
    syncCounts.push({
      system: system.key,
      label: system.label,
      accepted: load.accepted.length,
      missing: missing.length,
      calls,
    });
    log(
      `sync calls ${system.label}: ${[...calls].map(([k, v]) => `${k}=${v}`).join(' ')} for ${load.accepted.length} messages`,
    );
    await rm(workDir, { recursive: true, force: true });
  }
  await write();
} finally {
  const failed = records.some((r) => r.failure);
  if (failed) log(`failed runs' directories are kept under ${tmpRoot}`);
  await ctx.close(failed);
}
process.stdout.write(`report: ${OUTPUT.pathname}\n`);
