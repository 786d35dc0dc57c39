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
// Numbers move ±10 % between runs on a shared 2-core machine; compare.bench.ts is the
// measurement of record.
//   node bench/quick.ts [--medium | --large] [--rounds N] [--messages M] [--node-flag F] [--floor | --durable-floor] [--config JSON] [--threads] [--pods N]
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startEnvironment } from './environment.ts';
import { percentiles, runLoad, warmUp } from './loadgen.ts';
import { startFloor } from './peers/floor.ts';
import { startFullSluice } from './peers/sluice.ts';
import { cpuSeconds, MemoryWatch, threadCpuSeconds } from './proc-stats.ts';
import { awaitArrival } from './run-one.ts';

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
  },
});
const bytes = values.large ? 30_000_000 : values.medium ? 1_000_000 : 10_000;
const connections = values.large ? 10 : 20;
const rounds = Number(values.rounds ?? 4);
const messages = Number(values.messages ?? (values.large ? 1 : values.medium ? 10 : 50));
const env = await startEnvironment();
const rates: number[] = [];
const p99s: number[] = [];
const cpus: number[] = [];
const added: number[] = [];
const peaks: number[] = [];
/** CPU seconds by thread name over every round, and the messages they were spent on. */
const byThread = new Map<string, { user: number; system: number }>();
let threadMessages = 0;
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
for (let round = 0; round < rounds; round++) {
  const workDir = await mkdtemp(join(env.tmpRoot, 'quick-'));
  const relay =
    values.floor || values['durable-floor']
      ? await startFloor({
          ...env,
          workDir,
          sinkPort: env.sink.port,
          durable: values['durable-floor'] === true,
        })
      : await startFullSluice(
          env,
          workDir,
          values['node-flag'] ?? [],
          JSON.parse(values.config ?? '{}'),
          Number(values.pods ?? 1),
        );

  const load = (runId: string, perConnection: number) =>
    runLoad({
      port: relay.port,
      ...(relay.ports ? { ports: relay.ports } : {}),
      connections,
      messagesPerConnection: perConnection,
      recipients: 3,
      messageBytes: bytes,
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
    runId: `quick-warm-${round}`,
  });
  await awaitArrival(env.sink, warm.accepted, 60_000);
  const cpu = () => relay.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const cpuBefore = cpu();
  const threadsBefore = threadTimes(relay.pids());
  const memory = new MemoryWatch(() => relay.pids(), 50);
  const result = await load(`quick-${round}`, messages);
  const missing = await awaitArrival(env.sink, result.accepted, 60_000);
  // receiving and delivering: the relay's CPU (all its threads) until the last message arrived
  cpus.push(((cpu() - cpuBefore) * 1000) / result.accepted.length);
  for (const [name, t] of threadTimes(relay.pids())) {
    const was = threadsBefore.get(name) ?? { user: 0, system: 0 };
    const sum = byThread.get(name) ?? { user: 0, system: 0 };
    sum.user += t.user - was.user;
    sum.system += t.system - was.system;
    byThread.set(name, sum);
  }
  threadMessages += result.accepted.length;
  const peak = memory.stop();
  added.push((peak.peakRssKb - peak.startRssKb) / 1024);
  peaks.push(peak.peakRssKb / 1024);
  await relay.stop();
  if (missing.length > 0) throw new Error(`${missing.length} accepted messages never reached the sink`);
  rates.push(result.msgsPerSecond);
  p99s.push(percentiles(result.latenciesMs).p99);
}
await env.close(process.env.QUICK_KEEP === '1');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
process.stdout.write(
  `msgs/s ${rates.map((r) => r.toFixed(0)).join(' ')}; median ${median(rates).toFixed(0)}, ` +
    `p99 median ${median(p99s).toFixed(1)} ms, CPU median ${median(cpus).toFixed(2)} ms/msg, ` +
    `RSS added ${added.map((a) => a.toFixed(0)).join(' ')} MiB (median ${median(added).toFixed(0)}), ` +
    `peak RSS median ${median(peaks).toFixed(0)} MiB\n`,
);
if (values.threads) {
  const us = (seconds: number) => ((seconds * 1e6) / threadMessages).toFixed(0).padStart(6);
  process.stdout.write('CPU µs per message by thread (user + system):\n');
  for (const [name, t] of [...byThread].sort((a, b) => b[1].user + b[1].system - a[1].user - a[1].system)) {
    process.stdout.write(`  ${name.padEnd(16)} ${us(t.user + t.system)} = ${us(t.user)} + ${us(t.system)}\n`);
  }
}
