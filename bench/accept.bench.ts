// Benchmark entry (not a test): accepted messages per second into the durable spool,
// with fsync and group commit on, group commit off, and fsync off (what durability
// costs). 20 connections × 25 messages × 3 recipients, 10 KB, AUTH PLAIN; runs alternate
// between the modes and the table reports medians of 3 runs.
//   node bench/accept.bench.ts
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { PASSWORD, PLAIN_LISTENER, startTestRelay } from '@sluice/relay/testing';
import { sendAcceptLoad } from './util.ts';

const CONNECTIONS = 20;
const MESSAGES = 25;
const body = `Subject: bench\r\n\r\n${'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n'.repeat(140)}`;

type Mode = { name: string; fsync: boolean; groupCommit: boolean };
const modes: Mode[] = [
  { name: 'fsync, group commit', fsync: true, groupCommit: true },
  { name: 'fsync, no group commit', fsync: true, groupCommit: false },
  { name: 'no fsync', fsync: false, groupCommit: true },
];

async function run(mode: Mode): Promise<{ rate: number; fsyncs: number }> {
  const t = await startTestRelay({
    fsync: mode.fsync,
    config: {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      spool: { groupCommit: mode.groupCommit },
      rateLimits: { perUser: [] },
      limits: { maxConnectionsPerIp: 1000 },
    },
  });
  const started = performance.now();
  await sendAcceptLoad({
    port: t.port('plain'),
    auth: { user: 'alice', password: PASSWORD },
    sender: 'alice@example.com',
    body,
    connections: CONNECTIONS,
    messages: MESSAGES,
  });
  const seconds = (performance.now() - started) / 1000;
  const queued = (await t.relay.spool.list()).length;
  if (queued !== CONNECTIONS * MESSAGES) throw new Error(`spool holds ${queued} messages`);
  const fsyncs = t.relay.spool.committer.fsyncs;
  await t.close();
  return { rate: (CONNECTIONS * MESSAGES) / seconds, fsyncs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const results = new Map<string, Array<{ rate: number; fsyncs: number }>>();
for (let round = 0; round < 3; round++) {
  for (const mode of round % 2 ? [...modes].reverse() : modes) {
    const r = await run(mode);
    results.set(mode.name, [...(results.get(mode.name) ?? []), r]);
  }
}
const base = median((results.get(modes[0]?.name ?? '') ?? []).map((r) => r.rate));
const report = [
  '# Accept throughput into the durable spool',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version}`,
  '',
  `${CONNECTIONS} connections × ${MESSAGES} messages × 3 recipients, ${body.length} bytes, AUTH PLAIN, medians of 3 runs (A/B/C then C/B/A).`,
  '',
  '| mode | msgs/s | directory fsyncs per message | vs fsync + group commit |',
  '| --- | --- | --- | --- |',
  ...modes.map((m) => {
    const rs = results.get(m.name) ?? [];
    const rate = median(rs.map((r) => r.rate));
    const fsyncs = median(rs.map((r) => r.fsyncs)) / (CONNECTIONS * MESSAGES);
    return `| ${m.name} | ${rate.toFixed(0)} | ${fsyncs.toFixed(2)} | ${(rate / base).toFixed(2)}× |`;
  }),
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/accept.md', import.meta.url), report);
