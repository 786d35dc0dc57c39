// Benchmark entry (not a test): system calls per accepted message, by call, for Sluice
// under the small workload (Redis, DNSBL warm, group commit, fsync, delivery to the sink),
// traced with `strace -f -yy` attached to the relay for the measured load only, and the
// reads and writes by what their descriptor leads to (the SMTP clients, Redis, the sink,
// spool files, the log, the event fds that wake threads): where a change in the count comes
// from. strace slows the relay down, so no timing is reported; the counts are what this is for.
//   node bench/syscalls.bench.ts
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
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
const traceFile = join(workDir, 'strace.txt');
const strace = spawn('strace', ['-f', '-yy', '-s', '0', '-o', traceFile, '-p', String(pid)], {
  stdio: 'ignore',
});
await new Promise((resolve) => setTimeout(resolve, 1000)); // attached to every thread
const result = await load('syscalls', 50);
const missing = await awaitArrival(env.sink, result.accepted, 60_000);
await new Promise((resolve) => setTimeout(resolve, 500)); // the last deliveries' removals
strace.kill('SIGINT');
await new Promise((resolve) => strace.once('exit', resolve));
const trace = await readFile(traceFile, 'utf8');
await relay.stop();
await env.close();

const messages = result.accepted.length;

/** What a descriptor leads to, from strace -yy's annotation (e.g. TCP:[127.0.0.1:A->127.0.0.1:B]). */
function peer(fd: string): string {
  const tcp = /^TCP:\[[\d.]+:(\d+)->[\d.]+:(\d+)\]$/.exec(fd);
  if (tcp) {
    const [local, remote] = [Number(tcp[1]), Number(tcp[2])];
    if (local === relay.port) return 'SMTP clients';
    if (remote === env.redisPort) return 'Redis';
    if (remote === env.sink.port) return 'sink (delivery)';
    return 'other TCP';
  }
  if (fd.includes('/spool/')) return 'spool files';
  if (fd.endsWith('sluice.log')) return 'log (stdout)';
  if (fd.includes('eventfd')) return 'eventfd (thread wake-ups)';
  if (fd.includes('inotify')) return 'inotify (config directory)';
  return 'other';
}

const byCall = new Map<string, { calls: number; errors: number }>();
const byPeer = new Map<string, number>();
const IO = new Set(['read', 'write', 'writev', 'readv', 'sendmsg', 'recvmsg', 'sendto', 'recvfrom']);
for (const line of trace.split('\n')) {
  // "PID call(args) = N", or "PID call(args <unfinished ...>" with "<... call resumed> = N" later
  const resumed = /^\d+\s+<\.\.\. (\w+) resumed>.*= -1 /.exec(line);
  if (resumed?.[1]) {
    const row = byCall.get(resumed[1]);
    if (row) row.errors++;
    continue;
  }
  const call = /^\d+\s+(\w+)\((?:(\d+)<((?:TCP:\[[^\]]*\])|[^>]*)>)?/.exec(line);
  if (!call?.[1]) continue;
  const name = call[1];
  const row = byCall.get(name) ?? { calls: 0, errors: 0 };
  row.calls++;
  if (/\) += -1 /.test(line)) row.errors++;
  byCall.set(name, row);
  if (IO.has(name) && call[3] !== undefined) {
    const key = `${name} · ${peer(call[3])}`;
    byPeer.set(key, (byPeer.get(key) ?? 0) + 1);
  }
}
const rows = [...byCall].map(([name, r]) => ({ name, ...r })).sort((a, b) => b.calls - a.calls);
const peerRows = [...byPeer].sort((a, b) => b[1] - a[1]);
const total = rows.reduce((sum, r) => sum + r.calls, 0);
const report = [
  '# System calls per message (small workload)',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · \`node bench/syscalls.bench.ts\``,
  '',
  `\`strace -f -yy\` attached to the relay (all its threads) while ${messages} messages of 10 KB with 3 recipients were sent over 20 connections with pipelining and delivered to the sink (${missing.length} missing at the sink). Redis state, DNSBL warm, attachment scan, group commit, fsync on. Counts are per accepted message, receiving and delivery together.`,
  '',
  '| system call | per message | failed per message |',
  '| --- | --- | --- |',
  ...rows
    .filter((r) => r.calls / messages >= 0.01)
    .map((r) => `| ${r.name} | ${(r.calls / messages).toFixed(2)} | ${(r.errors / messages).toFixed(2)} |`),
  `| **all** | **${(total / messages).toFixed(1)}** | |`,
  '',
  '## Reads and writes by what the descriptor leads to',
  '',
  '| call · descriptor | per message |',
  '| --- | --- |',
  ...peerRows
    .filter(([, n]) => n / messages >= 0.01)
    .map(([key, n]) => `| ${key} | ${(n / messages).toFixed(2)} |`),
  '',
].join('\n');
await writeFile(join(RESULTS, 'syscalls.md'), report);
process.stdout.write(`report: ${join(RESULTS, 'syscalls.md')}\n`);
