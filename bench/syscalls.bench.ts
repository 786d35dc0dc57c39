// Benchmark entry (not a test): system calls per accepted message, by call, for Sluice
// under the small workload (Redis, DNSBL warm, group commit, fsync, delivery to the sink),
// counted with `strace -f -c` attached to the relay for the measured load only. strace
// slows the relay down, so no timing is reported; the counts are what this is for.
//   node bench/syscalls.bench.ts
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEnvironment } from './environment.ts';
import { runLoad, WARM_UP } from './loadgen.ts';
import { startFullSluice } from './peers/sluice.ts';
import { awaitArrival } from './run-one.ts';

const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const env = await startEnvironment();
const workDir = await mkdtemp(join(env.tmpRoot, 'syscalls-'));
const relay = await startFullSluice(env, workDir);
const load = (runId: string, messages: number) =>
  runLoad({
    port: relay.port,
    connections: 20,
    messagesPerConnection: messages,
    recipients: 3,
    messageBytes: 10_000,
    pipelining: true,
    starttls: false,
    auth: { user: env.user, password: env.password },
    runId,
  });
await load('syscalls-warm', WARM_UP.messagesPerConnection);
const [pid] = relay.pids();
const strace = spawn('strace', ['-f', '-c', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
let output = '';
strace.stderr.on('data', (d: Buffer) => {
  output += d.toString();
});
await new Promise((resolve) => setTimeout(resolve, 1000)); // attached to every thread
const result = await load('syscalls', 50);
const missing = await awaitArrival(env.sink, result.accepted, 60_000);
await new Promise((resolve) => setTimeout(resolve, 500)); // the last deliveries' removals
strace.kill('SIGINT');
await new Promise((resolve) => strace.once('exit', resolve));
await relay.stop();
await env.close();

const messages = result.accepted.length;
const rows = output
  .split('\n')
  .map((line) => line.trim().split(/\s+/))
  .filter((f) => /^[0-9.]+$/.test(f[0] ?? '') && f.length >= 5 && f.at(-1) !== 'total')
  .map((f) => ({ name: f.at(-1) ?? '', calls: Number(f[3]), errors: f.length === 6 ? Number(f[4]) : 0 }))
  .sort((a, b) => b.calls - a.calls);
const total = rows.reduce((sum, r) => sum + r.calls, 0);
const report = [
  '# System calls per message (small workload)',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · \`node bench/syscalls.bench.ts\``,
  '',
  `\`strace -f -c\` attached to the relay (all its threads) while ${messages} messages of 10 KB with 3 recipients were sent over 20 connections with pipelining and delivered to the sink (${missing.length} missing at the sink). Redis state, DNSBL warm, attachment scan, group commit, fsync on. Counts are per accepted message, receiving and delivery together.`,
  '',
  '| system call | per message | failed per message |',
  '| --- | --- | --- |',
  ...rows
    .filter((r) => r.calls / messages >= 0.01)
    .map((r) => `| ${r.name} | ${(r.calls / messages).toFixed(2)} | ${(r.errors / messages).toFixed(2)} |`),
  `| **all** | **${(total / messages).toFixed(1)}** | |`,
  '',
].join('\n');
await writeFile(join(RESULTS, 'syscalls.md'), report);
process.stdout.write(`report: ${join(RESULTS, 'syscalls.md')}\n`);
