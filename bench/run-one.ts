// One measured run: start a system, warm it up, put the load on it while its memory is
// sampled, check at the sink that every accepted message arrived, stop it.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { Context } from './environment.ts';
import { percentiles, runLoad, warmUp } from './loadgen.ts';
import type { RunningPeer } from './peers/peer.ts';
import type { RunningSluice } from './peers/sluice.ts';
import { MemoryWatch } from './proc-stats.ts';
import { commandCalls, scriptCallsBetween } from './redis-admin.ts';
import type { SinkProcess } from './sink-process.ts';

export interface Workload {
  key: string;
  label: string;
  connections: number;
  messages: number;
  recipients: number;
  bytes: number;
  pipelining: boolean;
  starttls: boolean;
  /** Connections each worker opens in turn (default 1). */
  connectionsPerWorker?: number;
  /** Each connection from its own loopback address (127.1.<worker>.<n>), as many clients. */
  manyClients?: boolean;
}

export interface SystemSpec {
  key: string;
  label: string;
  /** undefined: the load goes straight to the sink (the client-to-sink ceiling). */
  start?: (ctx: Context, workDir: string) => Promise<RunningPeer>;
  /** After the warm-up, before the measured load (e.g. prime the DNSBL cache). */
  prepare?: (ctx: Context, peer: RunningPeer, workload: Workload) => Promise<void>;
}

export interface RunRecord {
  /** Title of the comparison group the run belongs to. */
  group: string;
  workload: string;
  system: string;
  round: number;
  msgsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  greetingP50: number;
  greetingP99: number;
  /** How late the load generator's own event loop ran, p99 ms: its share of the latencies. */
  clientLateP99: number;
  accepted: number;
  refused: number;
  arrived: number;
  missing: number;
  duplicates: number;
  peakRssKb: number;
  hwmSumKb: number;
  startRssKb: number;
  /** Largest sum of PSS (shared pages counted once): the fair figure for many processes. */
  peakPssKb: number;
  /** 1-minute load average of the machine when the run started (other work shares the cores). */
  loadAverage: number;
  /** CPU milliseconds per accepted message: the system's processes, the load generator, the sink. */
  cpuMsPerMessage: { system: number; loadgen: number; sink: number };
  /** Sluice only: sluice_state_operations_total per accepted message, by op. */
  stateOps?: Record<string, number>;
  /** Script calls (EVAL/EVALSHA) the Redis server counted per accepted message (Sluice with Redis). */
  redisCallsPerMessage?: number;
  dnsQueries: number;
  /** Sluice only: DNSBL lookups by the tier that answered. */
  dnsblTiers?: Record<string, number>;
  /** Sluice only: the share of accepted messages whose 250 came more than 50 ms after
   * the final dot, by the relays' own sluice_smtp_data_reply_seconds. */
  relayReplyOver50?: number;
  errors: string[];
  failure?: string;
}

/** Source address of connection k of worker w in a many-clients workload. */
export const clientAddress = (worker: number, connection: number) => `127.1.${worker}.${connection + 1}`;

let runCounter = 0;

async function sumByLabel(
  peer: RunningSluice,
  metric: string,
  label: string,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of await peer.metric(metric)) {
    const key = new RegExp(`${label}="([^"]*)"`).exec(v.labels)?.[1] ?? '';
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

/** Accepted messages' wait from the final dot to the 250, and the spool commit within it. */
export interface RelayWaits {
  replySeconds: number;
  replies: number;
  /** Replies that took longer than 50 ms (the histogram's 0.05 bucket). */
  over50: number;
  commitSeconds: number;
  commits: number;
}

export const NO_WAITS: RelayWaits = { replySeconds: 0, replies: 0, over50: 0, commitSeconds: 0, commits: 0 };

/**
 * The relays' own counts so far (sluice_smtp_data_reply_seconds, sluice_spool_commit_seconds),
 * summed over pods; all zero for a relay without them.
 */
export async function relayWaits(peer: RunningSluice): Promise<RelayWaits> {
  const sum = async (name: string, ...labels: string[]) =>
    (await peer.metric(name))
      .filter((m) => labels.every((l) => m.labels.includes(l)))
      .reduce((total, m) => total + m.value, 0);
  const accepted = 'result="accepted"';
  const replies = await sum('sluice_smtp_data_reply_seconds_count', accepted);
  return {
    replySeconds: await sum('sluice_smtp_data_reply_seconds_sum', accepted),
    replies,
    over50: replies - (await sum('sluice_smtp_data_reply_seconds_bucket', accepted, 'le="0.05"')),
    commitSeconds: await sum('sluice_spool_commit_seconds_sum'),
    commits: await sum('sluice_spool_commit_seconds_count'),
  };
}

const isSluice = (peer: RunningPeer | undefined): peer is RunningSluice =>
  peer !== undefined && 'metric' in peer;

/** Waits until the sink holds every id (or the deadline passes); returns the ids missing. */
export async function awaitArrival(sink: SinkProcess, ids: string[], timeoutMs: number): Promise<string[]> {
  let missing = ids;
  await waitFor(
    'delivery to the sink',
    async () => {
      const seen = new Set((await sink.stats()).ids);
      missing = ids.filter((id) => !seen.has(id));
      return missing.length === 0;
    },
    { timeoutMs, intervalMs: 200 },
  ).catch(() => {});
  return missing;
}

export async function runOne(
  ctx: Context,
  group: string,
  workload: Workload,
  system: SystemSpec,
  round: number,
): Promise<RunRecord> {
  const workDir = await mkdtemp(join(ctx.tmpRoot, `${system.key}-${workload.key}-${round}-`));
  const auth = system.start ? { user: ctx.user, password: ctx.password } : undefined;
  let peer: RunningPeer | undefined;
  const record: RunRecord = {
    group,
    workload: workload.key,
    system: system.key,
    round,
    msgsPerSecond: 0,
    p50: Number.NaN,
    p90: Number.NaN,
    p99: Number.NaN,
    greetingP50: Number.NaN,
    greetingP99: Number.NaN,
    clientLateP99: Number.NaN,
    accepted: 0,
    refused: 0,
    arrived: 0,
    missing: 0,
    duplicates: 0,
    peakRssKb: 0,
    hwmSumKb: 0,
    startRssKb: 0,
    peakPssKb: 0,
    loadAverage: os.loadavg()[0] ?? 0,
    cpuMsPerMessage: { system: Number.NaN, loadgen: Number.NaN, sink: Number.NaN },
    dnsQueries: 0,
    errors: [],
  };
  try {
    peer = await system.start?.(ctx, workDir);
    const port = peer?.port ?? ctx.sink.port;
    const ports = peer?.ports ? { ports: peer.ports } : {};
    // warm-up: JIT, password cache, pooled downstream connections; not measured
    const warm = await warmUp({ port, ...ports, ...(auth ? { auth } : {}), runId: `warm${++runCounter}` });
    if (warm.accepted.length === 0) throw new Error(`warm-up accepted nothing: ${warm.errors.join('; ')}`);
    await awaitArrival(ctx.sink, warm.accepted, 30_000);
    await system.prepare?.(ctx, peer as RunningPeer, workload);
    await ctx.sink.reset();

    const sluice = isSluice(peer) ? peer : undefined;
    const opsBefore = sluice ? await sumByLabel(sluice, 'sluice_state_operations_total', 'op') : {};
    const tiersBefore = sluice ? await sumByLabel(sluice, 'sluice_dnsbl_lookups_total', 'tier') : {};
    const waitsBefore = sluice ? await relayWaits(sluice) : undefined;
    const redisBefore = sluice ? await commandCalls(ctx.redisPort) : undefined;
    const dnsBefore = ctx.dns.queries();
    const watch = peer ? new MemoryWatch(() => peer?.pids() ?? []) : undefined;
    const sinkCpu = new MemoryWatch(() => [ctx.sink.pid], 1000);
    const loadgenCpu = process.cpuUsage();

    const result = await runLoad({
      port,
      ...ports,
      connections: workload.connections,
      messagesPerConnection: workload.messages,
      connectionsPerWorker: workload.connectionsPerWorker ?? 1,
      recipients: workload.recipients,
      messageBytes: workload.bytes,
      pipelining: workload.pipelining,
      starttls: workload.starttls,
      ...(auth ? { auth } : {}),
      ...(workload.manyClients ? { localAddress: clientAddress } : {}),
      runId: `r${++runCounter}.${system.key}.${workload.key}`,
    });
    const memory = watch?.stop();
    const sinkSeconds = sinkCpu.stop().cpuSeconds;
    const loadgenUsage = process.cpuUsage(loadgenCpu);
    const perMessage = (seconds: number) => (1000 * seconds) / Math.max(1, result.accepted.length);
    record.cpuMsPerMessage = {
      system: memory ? perMessage(memory.cpuSeconds) : Number.NaN,
      loadgen: perMessage((loadgenUsage.user + loadgenUsage.system) / 1e6),
      sink: perMessage(sinkSeconds),
    };
    const lat = percentiles(result.latenciesMs);
    const greet = percentiles(result.greetingMs);
    Object.assign(record, {
      msgsPerSecond: result.msgsPerSecond,
      p50: lat.p50,
      p90: lat.p90,
      p99: lat.p99,
      greetingP50: greet.p50,
      greetingP99: greet.p99,
      clientLateP99: result.ownLoopDelayMs.p99,
      accepted: result.accepted.length,
      refused: result.refused,
      errors: result.errors,
      peakRssKb: memory?.peakRssKb ?? 0,
      hwmSumKb: memory?.hwmSumKb ?? 0,
      startRssKb: memory?.startRssKb ?? 0,
      peakPssKb: memory?.peakPssKb ?? 0,
      dnsQueries: ctx.dns.queries() - dnsBefore,
    });
    if (sluice && result.accepted.length > 0) {
      const opsAfter = await sumByLabel(sluice, 'sluice_state_operations_total', 'op');
      const tiersAfter = await sumByLabel(sluice, 'sluice_dnsbl_lookups_total', 'tier');
      record.stateOps = {};
      for (const [op, n] of Object.entries(opsAfter)) {
        record.stateOps[op] = (n - (opsBefore[op] ?? 0)) / result.accepted.length;
      }
      const waitsAfter = await relayWaits(sluice);
      const replies = waitsAfter.replies - (waitsBefore?.replies ?? 0);
      if (replies > 0) record.relayReplyOver50 = (waitsAfter.over50 - (waitsBefore?.over50 ?? 0)) / replies;
      record.dnsblTiers = {};
      for (const [tier, n] of Object.entries(tiersAfter))
        record.dnsblTiers[tier] = n - (tiersBefore[tier] ?? 0);
      if (redisBefore) {
        const calls = scriptCallsBetween(redisBefore, await commandCalls(ctx.redisPort));
        if (calls > 0) record.redisCallsPerMessage = calls / result.accepted.length;
      }
    }
    const timeoutMs = 30_000 + (result.accepted.length * workload.bytes) / 5_000; // ≥ 5 MB/s
    const missing = await awaitArrival(ctx.sink, result.accepted, timeoutMs);
    const stats = await ctx.sink.stats();
    record.arrived = result.accepted.length - missing.length;
    record.missing = missing.length;
    record.duplicates = stats.duplicates;
    const expected = workload.connections * (workload.connectionsPerWorker ?? 1) * workload.messages;
    if (missing.length > 0) record.failure = `${missing.length} accepted messages never reached the sink`;
    else if (result.accepted.length < expected)
      record.failure = `${expected - result.accepted.length} of ${expected} messages not accepted`;
  } catch (err: unknown) {
    record.failure = err instanceof Error ? err.message : String(err);
  } finally {
    await peer?.stop().catch(() => {});
    if (record.failure) process.stderr.write(`  kept ${workDir} for inspection\n`);
    else await rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
  return record;
}
