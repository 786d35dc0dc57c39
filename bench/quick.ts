// A minute's check of a relay change (not part of make bench): Sluice alone under the
// small workload (--medium: 1 MB; --large: 10 concurrent 30 MB messages), restarted for
// each of a few rounds; medians of msgs/s, p99, CPU per message (all the relay's threads,
// receiving and delivering) and RSS added at the peak. --node-flag passes a flag to the
// relay's node (repeatable), for trying runtime settings. --floor measures the library
// floor (bench/floor-relay.ts) instead of Sluice, --durable-floor the same with fsync; --config '{"log":{"level":"warn"}}'
// replaces top-level sections of the relay's config, for finding what a setting costs.
// --threads adds the CPU per message by thread (main, libuv's pool, V8's helpers…), user
// and system apart, over all rounds. --pods N runs N relays sharing Redis, the load spread
// over them (compare.bench.ts's "two pods").
// Each round also reads the relays' own account of the wait after the final dot and of the
// spool commit within it (sluice_smtp_data_reply_seconds, sluice_spool_commit_seconds).
// --against REF runs the relay of another commit too (its files exported with git archive
// into a directory of its own, with its own npm ci), alternating with this checkout's
// round by round under the same harness, and reports each round's pair as a ratio: on a
// machine whose speed drifts by a third within minutes, only pairs run back to back
// compare. Its config is this harness's, so REF must accept it. --against-node-flag F
// gives that relay's node a flag of its own (repeatable): with --against HEAD it weighs a
// runtime setting on the same code. --plain sends text/plain messages instead of text
// with a PDF attachment. --gc runs the relays with --trace-gc-nvp and reports, from their
// logs over the measured load, the bytes V8 promoted to the old generation per message and
// the pauses of its scavenges and mark-compacts: how much garbage outlives a scavenge,
// which depends far less on the machine's speed than CPU time does.
// Numbers move ±10 % between runs on a shared 2-core machine; compare.bench.ts is the
// measurement of record.
//   node bench/quick.ts [--medium | --large] [--rounds N] [--messages M] [--node-flag F] [--floor | --durable-floor] [--config JSON] [--threads] [--pods N] [--against REF [--against-node-flag F]] [--plain] [--gc]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Context, startEnvironment } from './environment.ts';
import { percentiles, runLoad, warmUp } from './loadgen.ts';
import { startFloor } from './peers/floor.ts';
import { startFullSluice } from './peers/sluice.ts';
import { cpuSeconds, MemoryWatch, threadCpuSeconds } from './proc-stats.ts';
import { awaitArrival, NO_WAITS, type RelayWaits, relayWaits } from './run-one.ts';

const { values } = parseArgs({
  options: {
    medium: { type: 'boolean' },
    large: { type: 'boolean' },
    rounds: { type: 'string' },
    messages: { type: 'string' },
    'node-flag': { type: 'string', multiple: true },
    floor: { type: 'boolean' },
    'durable-floor': { type: 'boolean' },
    config: { type: 'string' },
    threads: { type: 'boolean' },
    pods: { type: 'string' },
    against: { type: 'string' },
    'against-node-flag': { type: 'string', multiple: true },
    plain: { type: 'boolean' },
    gc: { type: 'boolean' },
  },
});
if (values['against-node-flag'] && !values.against) {
  // it applies to the other relay only: without one it would be ignored, and the run misread
  console.error(
    '--against-node-flag needs --against REF (with --against HEAD it weighs a flag on this code)',
  );
  process.exit(2);
}
const bytes = values.large ? 30_000_000 : values.medium ? 1_000_000 : 10_000;
const connections = values.large ? 10 : 20;
const rounds = Number(values.rounds ?? 4);
const messages = Number(values.messages ?? (values.large ? 1 : values.medium ? 10 : 50));
const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** One relay under test: this checkout's, or another commit's (--against). */
interface Variant {
  label: string;
  /** The relay's entry point; this checkout's when undefined. */
  main?: string;
  /** Flags for its node beyond --node-flag's. */
  flags: string[];
  rates: number[];
  p99s: number[];
  /** Per round: p50 and p99 of MAIL FROM → 354 and of 354 → 250, in ms. */
  phases: Array<{
    envelope: [number, number];
    data: [number, number];
    ownLoop: [number, number];
    ownCpu: number;
  }>;
  cpus: number[];
  added: number[];
  peaks: number[];
  /** CPU seconds by thread name over every round, and the messages they were spent on. */
  byThread: Map<string, { user: number; system: number }>;
  threadMessages: number;
  /** --gc: V8's collections over the measured loads. */
  gc: GcTally;
  /** The relays' metrics over the measured loads, summed over rounds (zero for a relay older than 3d03e29). */
  waits: RelayWaits;
}

interface GcTally {
  promotedBytes: number;
  scavenges: number[];
  markCompacts: number[];
}

const variant = (label: string, main?: string, flags: string[] = []): Variant => ({
  label,
  ...(main ? { main } : {}),
  flags,
  rates: [],
  p99s: [],
  phases: [],
  cpus: [],
  added: [],
  peaks: [],
  byThread: new Map(),
  threadMessages: 0,
  gc: { promotedBytes: 0, scavenges: [], markCompacts: [] },
  waits: { ...NO_WAITS },
});

/** The relays' logs under dir (one per pod) and their sizes now. */
function logSizes(dir: string): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (name.endsWith('sluice.log')) sizes.set(join(dir, name), statSync(join(dir, name)).size);
  }
  return sizes;
}

/** Adds the --trace-gc-nvp lines written to the logs since `from` (every isolate, workers too). */
function tallyGc(from: Map<string, number>, into: GcTally): void {
  for (const [file, offset] of from) {
    const text = readFileSync(file).subarray(offset).toString('latin1');
    for (const line of text.split('\n')) {
      const kind = / gc=(s|mc|ms) /.exec(line)?.[1];
      const pause = Number(/ pause=([\d.]+)/.exec(line)?.[1]);
      if (!kind || Number.isNaN(pause)) continue;
      if (kind === 's') {
        into.scavenges.push(pause);
        into.promotedBytes += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0);
      } else {
        into.markCompacts.push(pause);
      }
    }
  }
}

/** The files of a commit in a directory of their own with their packages installed (kept for the next run). */
function checkout(ref: string): string {
  const sha = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: ROOT })
    .toString()
    .trim();
  const dir = join(os.tmpdir(), `sluice-quick-${sha.slice(0, 12)}`);
  if (!existsSync(join(dir, 'node_modules', '.package-lock.json'))) {
    process.stdout.write(`exporting ${sha.slice(0, 12)} into ${dir} and installing its packages…\n`);
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `git archive ${sha} | tar -x -C ${dir}`], { cwd: ROOT });
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'ignore' });
  }
  return join(dir, 'relay', 'src', 'main.ts');
}

const threadTimes = (pids: number[]) => {
  const sums = new Map<string, { user: number; system: number }>();
  for (const pid of pids) {
    for (const [name, t] of threadCpuSeconds(pid)) {
      const sum = sums.get(name) ?? { user: 0, system: 0 };
      sum.user += t.user;
      sum.system += t.system;
      sums.set(name, sum);
    }
  }
  return sums;
};

async function measureRound(env: Context, v: Variant, round: number): Promise<void> {
  const tag = v.label.replace(/[^\w.-]+/g, '_');
  const workDir = await mkdtemp(join(env.tmpRoot, 'quick-'));
  const floor = values.floor || values['durable-floor'];
  /** Sluice's relays (not a floor's), whose metrics are read too. */
  const sluice = floor
    ? undefined
    : await startFullSluice(
        env,
        workDir,
        [...(values['node-flag'] ?? []), ...(values.gc ? ['--trace-gc-nvp'] : []), ...v.flags],
        JSON.parse(values.config ?? '{}'),
        Number(values.pods ?? 1),
        v.main,
      );
  const relay =
    sluice ??
    (await startFloor({
      ...env,
      workDir,
      sinkPort: env.sink.port,
      durable: values['durable-floor'] === true,
    }));

  const load = (runId: string, perConnection: number) =>
    runLoad({
      port: relay.port,
      ...(relay.ports ? { ports: relay.ports } : {}),
      connections,
      messagesPerConnection: perConnection,
      recipients: 3,
      messageBytes: bytes,
      ...(values.plain ? { plainText: true } : {}),
      pipelining: true,
      starttls: false,
      auth: { user: env.user, password: env.password },
      runId,
    });
  // the compare harness's warm-up (small messages)
  const warm = await warmUp({
    port: relay.port,
    ...(relay.ports ? { ports: relay.ports } : {}),
    auth: { user: env.user, password: env.password },
    runId: `quick-warm-${tag}-${round}`,
  });
  await awaitArrival(env.sink, warm.accepted, 60_000);
  const cpu = () => relay.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const cpuBefore = cpu();
  const threadsBefore = threadTimes(relay.pids());
  const memory = new MemoryWatch(() => relay.pids(), 50);
  const logsBefore = values.gc ? logSizes(workDir) : undefined;
  const waitsBefore = sluice ? await relayWaits(sluice) : undefined;
  const result = await load(`quick-${tag}-${round}`, messages);
  if (sluice && waitsBefore) {
    const waitsAfter = await relayWaits(sluice);
    for (const key of Object.keys(NO_WAITS) as Array<keyof RelayWaits>)
      v.waits[key] += waitsAfter[key] - waitsBefore[key];
  }
  const missing = await awaitArrival(env.sink, result.accepted, 60_000);
  if (logsBefore) tallyGc(logsBefore, v.gc);
  // receiving and delivering: the relay's CPU (all its threads) until the last message arrived
  v.cpus.push(((cpu() - cpuBefore) * 1000) / result.accepted.length);
  for (const [name, t] of threadTimes(relay.pids())) {
    const was = threadsBefore.get(name) ?? { user: 0, system: 0 };
    const sum = v.byThread.get(name) ?? { user: 0, system: 0 };
    sum.user += t.user - was.user;
    sum.system += t.system - was.system;
    v.byThread.set(name, sum);
  }
  v.threadMessages += result.accepted.length;
  const peak = memory.stop();
  v.added.push((peak.peakRssKb - peak.startRssKb) / 1024);
  v.peaks.push(peak.peakRssKb / 1024);
  await relay.stop();
  if (missing.length > 0) throw new Error(`${missing.length} accepted messages never reached the sink`);
  v.rates.push(result.msgsPerSecond);
  v.p99s.push(percentiles(result.latenciesMs).p99);
  const envelope = percentiles(result.envelopeMs);
  const data = percentiles(result.dataMs);
  v.phases.push({
    envelope: [envelope.p50, envelope.p99],
    data: [data.p50, data.p99],
    ownLoop: [result.ownLoopDelayMs.p50, result.ownLoopDelayMs.p99],
    ownCpu: result.ownCpuMsPerMessage,
  });
}

const variants = [variant('this checkout')];
if (values.against) {
  const flags = values['against-node-flag'] ?? [];
  const label = [values.against, ...flags].join(' ');
  variants.push(variant(label, checkout(values.against), flags));
}
const env = await startEnvironment();
for (let round = 0; round < rounds; round++) {
  // the order alternates, so that neither goes first on a machine that drifts
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) await measureRound(env, v, round);
}
await env.close(process.env.QUICK_KEEP === '1');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
for (const v of variants) {
  if (variants.length > 1) process.stdout.write(`${v.label}:\n`);
  process.stdout.write(
    `msgs/s ${v.rates.map((r) => r.toFixed(0)).join(' ')}; median ${median(v.rates).toFixed(0)}, ` +
      `p99 median ${median(v.p99s).toFixed(1)} ms, CPU median ${median(v.cpus).toFixed(2)} ms/msg, ` +
      `RSS added ${v.added.map((a) => a.toFixed(0)).join(' ')} MiB (median ${median(v.added).toFixed(0)}), ` +
      `peak RSS median ${median(v.peaks).toFixed(0)} MiB\n`,
  );
  if (values.gc) {
    const { promotedBytes, scavenges, markCompacts } = v.gc;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    process.stdout.write(
      `GC: promoted ${(promotedBytes / 1024 / v.threadMessages).toFixed(1)} KB per message; ` +
        `${scavenges.length} scavenges, pause median ${median(scavenges).toFixed(1)} ms, max ${Math.max(...scavenges).toFixed(1)} ms; ` +
        `${markCompacts.length} mark-compacts, ${((sum(markCompacts) * 1000) / v.threadMessages).toFixed(0)} µs of pause per message; ` +
        `${((sum(scavenges) * 1000) / v.threadMessages).toFixed(0)} µs of scavenge pause per message\n`,
    );
  }
  const phase = (pick: (p: Variant['phases'][number]) => [number, number]) =>
    `p50 ${median(v.phases.map((p) => pick(p)[0])).toFixed(1)}, p99 ${median(v.phases.map((p) => pick(p)[1])).toFixed(1)} ms`;
  process.stdout.write(
    `the load generator's view, medians of the rounds: MAIL FROM → 354 ${phase((p) => p.envelope)}; ` +
      `354 → 250 ${phase((p) => p.data)}; its own event loop late by ${phase((p) => p.ownLoop)}, its CPU ${median(v.phases.map((p) => p.ownCpu)).toFixed(2)} ms/msg\n`,
  );
  const w = v.waits;
  if (w.replies > 0) {
    const ms = (seconds: number, n: number) => ((seconds * 1000) / n).toFixed(1);
    process.stdout.write(
      `wait for the 250 after the final dot (the relays' metrics): mean ${ms(w.replySeconds, w.replies)} ms, ` +
        `${((100 * w.over50) / w.replies).toFixed(1)} % over 50 ms; the spool commit within it: ` +
        `mean ${ms(w.commitSeconds, w.commits)} ms (${((100 * w.commitSeconds) / w.replySeconds).toFixed(0)} % of the wait)\n`,
    );
  }
  if (values.threads) {
    const us = (seconds: number) => ((seconds * 1e6) / v.threadMessages).toFixed(0).padStart(6);
    process.stdout.write('CPU µs per message by thread (user + system):\n');
    for (const [name, t] of [...v.byThread].sort(
      (a, b) => b[1].user + b[1].system - a[1].user - a[1].system,
    )) {
      process.stdout.write(
        `  ${name.padEnd(16)} ${us(t.user + t.system)} = ${us(t.user)} + ${us(t.system)}\n`,
      );
    }
  }
}
const [mine, theirs] = variants;
if (mine && theirs) {
  const ratios = (a: number[], b: number[]) => a.map((x, i) => x / (b[i] ?? Number.NaN));
  const show = (xs: number[]) => `${xs.map((x) => x.toFixed(2)).join(' ')} (median ${median(xs).toFixed(2)})`;
  process.stdout.write(
    `this checkout ÷ ${theirs.label}, round by round: CPU per message ${show(ratios(mine.cpus, theirs.cpus))}; ` +
      `msgs/s ${show(ratios(mine.rates, theirs.rates))}; p99 ${show(ratios(mine.p99s, theirs.p99s))}\n`,
  );
}
