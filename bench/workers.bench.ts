// Benchmark entry (not a test): accepted messages per second of one relay run with
// `workers: 1` and with more workers, in the same run, the relay with every check on
// (Redis state, DNSBL, attachment scan, fsync, group commit) and delivering to the sink.
// The load is the compare bench's 20 connections × 50 messages, 10 KB, AUTH PLAIN.
//
// Where the machine has a core to spare beyond the relay's, the relay's processes are
// pinned (taskset) to cores 0..w-1 and everything else (the load generator in this
// process, the sink, Redis) to the remaining cores, so that the load does not take the
// relay's CPU: the "pinned" rows. The "shared" rows leave every process free to run on
// every core, which is the only way to run w workers on a machine with w cores or fewer;
// their ratio to the shared 1-worker row is what more workers give on this machine with
// the load generator competing for the same cores.
//   node bench/workers.bench.ts [--counts 1,2,4] [--rounds 3]
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { type Context, startEnvironment } from './environment.ts';
import { startFullSluice } from './peers/sluice.ts';
import { processTree } from './proc-stats.ts';
import { type RunRecord, runOne, type SystemSpec, type Workload } from './run-one.ts';

const { values } = parseArgs({
  options: {
    counts: { type: 'string', default: '1,2' },
    rounds: { type: 'string', default: '3' },
  },
});
const counts = values.counts.split(',').map(Number);
const ROUNDS = Number(values.rounds);
const CORES = os.availableParallelism();
const ALL = cpuRange(0, CORES - 1);

const WORKLOAD: Workload = {
  key: '10k',
  label: '20 connections × 50 messages × 1 recipient, 10 KB, pipelining, AUTH PLAIN',
  connections: 20,
  messages: 50,
  recipients: 1,
  bytes: 10_000,
  pipelining: true,
  starttls: false,
};

/** Sets the CPUs every thread of these processes may run on. */
function pin(pids: number[], cpus: string): void {
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-cp', cpus, String(pid)], { stdio: 'ignore' });
    } catch {
      // exited meanwhile
    }
  }
}

interface Setup {
  workers: number;
  /** The relay's cores and everyone else's, or undefined: every process on every core. */
  cores?: { relay: string; rest: string };
}

/** taskset's list of CPUs first..last: "0", "0-3". */
function cpuRange(first: number, last: number): string {
  return first === last ? String(first) : `${first}-${last}`;
}

const cpus = (list: string) => `${list.includes('-') ? 'CPUs' : 'CPU'} ${list}`;

function label(setup: Setup): string {
  return setup.cores
    ? `relay on ${cpus(setup.cores.relay)}, load on ${cpus(setup.cores.rest)}`
    : `all on ${cpus(ALL)}`;
}

function system(setup: Setup): SystemSpec {
  return {
    key: `w${setup.workers}${setup.cores ? 'p' : 's'}`,
    label: `workers: ${setup.workers}, ${label(setup)}`,
    async start(ctx: Context, workDir: string) {
      const sluice = await startFullSluice(ctx, workDir, [], { workers: setup.workers });
      const relay = new Set(sluice.pids());
      const rest = processTree(process.pid).filter((pid) => !relay.has(pid));
      pin(rest, setup.cores?.rest ?? ALL);
      pin([...relay], setup.cores?.relay ?? ALL);
      return sluice;
    },
  };
}

const setups: Setup[] = [];
for (const workers of counts) {
  // pinned where the relay gets w cores of its own and the load at least one other
  if (CORES >= workers + 1)
    setups.push({
      workers,
      cores: { relay: cpuRange(0, workers - 1), rest: cpuRange(workers, CORES - 1) },
    });
  setups.push({ workers });
}

const env = await startEnvironment();
const records = new Map<string, RunRecord[]>();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const setup of round % 2 ? [...setups].reverse() : setups) {
      const spec = system(setup);
      process.stderr.write(`round ${round + 1}: ${spec.label}\n`);
      const record = await runOne(env, 'workers', WORKLOAD, spec, round);
      if (record.failure) process.stderr.write(`  failed: ${record.failure}\n`);
      records.set(spec.key, [...(records.get(spec.key) ?? []), record]);
    }
  }
} finally {
  pin(processTree(process.pid), ALL);
  await env.close();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const rate = (setup: Setup) => median((records.get(system(setup).key) ?? []).map((r) => r.msgsPerSecond));
const base = (setup: Setup) => {
  const one = setups.find((s) => s.workers === 1 && (s.cores === undefined) === (setup.cores === undefined));
  return one ? rate(one) : Number.NaN;
};
const cpuModel = os.cpus()[0]?.model ?? 'cpu';
const report = [
  '# Workers per relay: accepted messages per second',
  '',
  `${new Date().toISOString()} · ${CORES} × ${cpuModel} (os.availableParallelism) · Node ${process.version}`,
  '',
  `${WORKLOAD.label}; Sluice with Redis state, DNSBL, attachment scan, fsync and group commit, delivering`,
  `to the sink. Medians of ${ROUNDS} runs in alternating order. "pinned": the relay's processes on their own`,
  'CPUs (taskset), the load generator, sink and Redis on the others; "shared": every process on every CPU.',
  "Load average: the machine's 1-minute load when each run started (other work on the same CPUs), median.",
  '',
  '| workers | CPUs | msgs/s | vs 1 worker (same CPUs) | p99 accept ms | relay CPU ms/msg | load generator CPU ms/msg | load average | failed runs |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...setups.map((setup) => {
    const rs = records.get(system(setup).key) ?? [];
    const r = rate(setup);
    return `| ${setup.workers} | ${label(setup)} | ${r.toFixed(0)} | ${(r / base(setup)).toFixed(2)}× | ${median(rs.map((x) => x.p99)).toFixed(1)} | ${median(rs.map((x) => x.cpuMsPerMessage.system)).toFixed(2)} | ${median(rs.map((x) => x.cpuMsPerMessage.loadgen)).toFixed(2)} | ${median(rs.map((x) => x.loadAverage)).toFixed(1)} | ${rs.filter((x) => x.failure).length} |`;
  }),
  '',
  CORES < Math.max(...counts) + 1
    ? `This machine has ${CORES} CPUs: ${Math.max(...counts)} workers cannot have CPUs of their own beside the load generator, so the scaling to a 4-CPU limit cannot be shown here; the shared rows give what more workers add with the load generator, the sink and Redis on the same CPUs.`
    : '',
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/workers.md', import.meta.url), report);
