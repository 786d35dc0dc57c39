// Benchmark entry (not a test): where Sluice spends its CPU under the small workload.
// Runs the relay as compare.bench.ts does (Redis, DNSBL warm, group commit, fsync) with
// `node --cpu-prof`, then ranks functions and packages by self time and functions by
// inclusive time, and draws a flame graph (bench/results/flame-<size>.svg). The profile
// itself is kept in bench/results/ (git-ignored) for Chrome DevTools or speedscope.
//   node bench/profile.bench.ts [--quick] [--medium]   (--medium: 1 MB messages, 20 × 10)
import { copyFile, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEnvironment } from './environment.ts';
import { type CpuProfile, flameGraphSvg, type ProfileNode, samplesIn } from './flame-graph.ts';
import { percentiles, runLoad, WARM_UP } from './loadgen.ts';
import { startFullSluice } from './peers/sluice.ts';
import { awaitArrival } from './run-one.ts';

const QUICK = process.argv.includes('--quick');
const MEDIUM = process.argv.includes('--medium');
const BYTES = MEDIUM ? 1_000_000 : 10_000;
const SIZE_LABEL = MEDIUM ? '1 MB' : '10 KB';
const NAME = MEDIUM ? 'medium' : 'small';
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Where a frame's code lives: a package, a part of Sluice, Node itself, or V8's own bins. */
function owner(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] ?? url;
  if (url.startsWith('node:')) return 'node: internals';
  const local = url.replace(/^file:\/\//, '').replace(ROOT, '');
  const dir = /^(relay\/src\/[^/]+)\//.exec(local);
  return dir ? `sluice ${dir[1]}` : local;
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(/^file:\/\//, '').replace(ROOT, '');
  return `${functionName || '(anonymous)'} ${file ? `${file.replace(/^.*node_modules\//, '')}:${lineNumber + 1}` : ''}`.trim();
}

/**
 * Parts of the relay's work, for the per-message table: a sample goes to the first part
 * one of its frames belongs to, from the running frame outwards (so a socket write made by
 * delivery counts as delivery, and a log line written during DATA as logging).
 */
const PARTS: ReadonlyArray<[string, RegExp]> = [
  ['garbage collection', /^\(garbage collector\)/],
  [
    'logging (pino, redaction, escaping)',
    /node_modules\/(pino|@pinojs|fast-redact|sonic-boom)\/|observability\/logger/,
  ],
  ['metrics (prom-client)', /node_modules\/prom-client\//],
  ['tracing (spans, no exporter)', /@opentelemetry|observability\/spans|smtp\/session-trace/],
  [
    'rate limits and other shared state (Redis)',
    /node_modules\/(ioredis|redis-parser|denque)\/|relay\/src\/state\/|policy\/shared-checks/,
  ],
  ['usage counters', /relay\/src\/usage\//],
  ['attachment scan (MIME)', /relay\/src\/mime\/|node_modules\/(mailsplit|libmime)\//],
  ['DKIM signer (without a key: the header From)', /relay\/src\/dkim\//],
  ['spool write, fsync, rename', /relay\/src\/spool\//],
  ['delivery (queue, spool read, nodemailer)', /relay\/src\/(delivery|queue)\/|node_modules\/nodemailer\//],
  [
    'receiving (SMTP session, DATA stream, checks)',
    /relay\/src\/(smtp|policy|auth|dnsbl)\/|node_modules\/smtp-server\//,
  ],
];
const SUPPRESSION_PART = 'suppression list (a Redis call per RCPT)';
const OTHER_PART = 'other (Node streams and sockets, timers, V8)';

function partOf(stack: readonly ProfileNode[]): string {
  // the suppression check's Redis call is its own, not the rate limits'
  if (stack.some((frame) => frame.callFrame.url.includes('relay/src/suppression/'))) return SUPPRESSION_PART;
  for (const frame of stack) {
    const text = `${frame.callFrame.functionName} ${frame.callFrame.url}`;
    for (const [part, pattern] of PARTS) if (pattern.test(text)) return part;
  }
  return OTHER_PART;
}

/** Ranks the samples taken between from and to (µs on the monotonic clock V8 and process.hrtime share). */
function analyse(profile: CpuProfile, from: number, to: number) {
  const self = new Map<string, number>();
  const selfByOwner = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const parts = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const { node, ms: dt, stack } of samplesIn(profile, from, to)) {
    total += dt;
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const name = frameName(node);
    self.set(name, (self.get(name) ?? 0) + dt);
    const o = owner(node.callFrame.url, node.callFrame.functionName);
    selfByOwner.set(o, (selfByOwner.get(o) ?? 0) + dt);
    const part = partOf(stack);
    parts.set(part, (parts.get(part) ?? 0) + dt);
    // recursion counts once per sample
    for (const n of new Set(stack.map(frameName))) inclusive.set(n, (inclusive.get(n) ?? 0) + dt);
  }
  const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  return {
    total,
    idle,
    busy: total - idle,
    self: top(self, 25),
    owners: top(selfByOwner, 20),
    inclusive: top(inclusive, 30),
    parts: top(parts, PARTS.length + 2),
  };
}

const env = await startEnvironment();
const workDir = await mkdtemp(join(env.tmpRoot, 'profile-'));
const profDir = join(workDir, 'prof');
await mkdir(profDir);
const relay = await startFullSluice(env, workDir, [
  '--cpu-prof',
  `--cpu-prof-dir=${profDir}`,
  '--cpu-prof-interval=250',
]);
const load = (runId: string, messages: number) =>
  runLoad({
    port: relay.port,
    connections: QUICK ? 4 : 20,
    messagesPerConnection: messages,
    recipients: 3,
    messageBytes: BYTES,
    pipelining: true,
    starttls: false,
    auth: { user: env.user, password: env.password },
    runId,
  });
await load('profile-warm', QUICK ? 2 : WARM_UP.messagesPerConnection);
const micros = () => Number(process.hrtime.bigint() / 1000n);
const loadStart = micros();
const result = await load('profile', QUICK ? 5 : MEDIUM ? 10 : 100);
const missing = await awaitArrival(env.sink, result.accepted, 60_000);
const loadEnd = micros();
await relay.stop(); // SIGTERM: the relay exits and Node writes the profile
const file = (await readdir(profDir)).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('no .cpuprofile written');
const profile = JSON.parse(await readFile(join(profDir, file), 'utf8')) as CpuProfile;
// only the load and the delivery it caused, not start-up and shutdown (module loading, config)
const windowed = profile.startTime < loadStart && profile.endTime > loadEnd;
const a = windowed ? analyse(profile, loadStart, loadEnd) : analyse(profile, 0, Number.POSITIVE_INFINITY);
await copyFile(join(profDir, file), join(RESULTS, `sluice-${NAME}.cpuprofile`));
const flameFile = QUICK ? `flame-${NAME}-quick.tmp` : `flame-${NAME}.svg`;
await writeFile(
  join(RESULTS, flameFile),
  flameGraphSvg(profile, windowed ? loadStart : 0, windowed ? loadEnd : Number.POSITIVE_INFINITY, {
    title: `Sluice relay, main thread: ${SIZE_LABEL} messages, 3 recipients, 20 connections (${new Date().toISOString().slice(0, 10)})`,
    frameName,
    owner,
  }),
);
await env.close();

const pct = (ms: number) => `${((100 * ms) / a.busy).toFixed(1)} %`;
const lat = percentiles(result.latenciesMs);
const report = [
  `# Where Sluice spends its CPU (${NAME} messages)`,
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version}${QUICK ? ' · **quick check**' : ''}`,
  '',
  `\`node --cpu-prof\` of \`relay/src/main.ts\` (Redis state, DNSBL warm, attachment scan, group commit, fsync on, delivery to the sink) while ${result.accepted.length} messages of ${SIZE_LABEL} with 3 recipients were sent over ${QUICK ? 4 : 20} connections with pipelining (${result.msgsPerSecond.toFixed(0)} msgs/s, p50 ${lat.p50.toFixed(1)} ms, p99 ${lat.p99.toFixed(1)} ms, ${missing.length} missing at the sink). ${windowed ? 'Only the samples from the start of the measured load until the last message reached the sink are counted (start-up, warm-up and shutdown are left out).' : 'The whole process life is counted (the profile clock did not line up with the load window).'} The flame graph is [\`${flameFile}\`](${flameFile}); the profile itself is \`bench/results/sluice-${NAME}.cpuprofile\` (git-ignored; open it in Chrome DevTools or speedscope).`,
  '',
  `Profiled ${(a.total / 1000).toFixed(1)} s, of which the main thread was busy ${(a.busy / 1000).toFixed(1)} s (${((100 * a.busy) / a.total).toFixed(0)} %); that is ${(a.busy / Math.max(1, result.accepted.length)).toFixed(2)} ms of main-thread CPU per message. Percentages below are of the busy time.`,
  '',
  '## Main-thread time per message by part of the work',
  '',
  '| part | µs per message | share |',
  '| --- | --- | --- |',
  ...a.parts.map(
    ([part, ms]) =>
      `| ${part} | ${((1000 * ms) / Math.max(1, result.accepted.length)).toFixed(0)} | ${pct(ms)} |`,
  ),
  '',
  '## Self time by package or part of Sluice',
  '',
  '| where | self ms | share |',
  '| --- | --- | --- |',
  ...a.owners.map(([o, ms]) => `| ${o} | ${ms.toFixed(0)} | ${pct(ms)} |`),
  '',
  '## Top functions by self time',
  '',
  '| function | self ms | share |',
  '| --- | --- | --- |',
  ...a.self.map(([f, ms]) => `| \`${f}\` | ${ms.toFixed(0)} | ${pct(ms)} |`),
  '',
  '## Top functions by inclusive time',
  '',
  '| function | inclusive ms | share |',
  '| --- | --- | --- |',
  ...a.inclusive.map(([f, ms]) => `| \`${f}\` | ${ms.toFixed(0)} | ${pct(ms)} |`),
  '',
].join('\n');
const out = join(RESULTS, QUICK ? 'profile-quick.tmp' : MEDIUM ? 'profile-medium.md' : 'profile.md');
await writeFile(out, report);
process.stdout.write(`profile: ${out}\n`);
