// Benchmark entry (not a test): one relay holding a large queue, as after a day of a big
// mailbox provider deferring everything. The spool is written directly in the relay's
// format (each message once attempted and deferred: its file, and the envelope beside it
// with the next attempt an hour or two ahead), then a relay process starts over it.
// Measured: time from start to the first 220, the background scan, RSS, CPU while nothing
// is due, the cost of a retry pass (a fixed number of messages come due at once), the
// queue listing through the admin API and the CLI, acceptance throughput with the backlog
// against the same relay setup over an empty queue, and the drain once the destination
// accepts again. The destination is a small SMTP responder in this process: it answers
// 451 to MAIL while deferring, and takes every message while accepting.
//   node bench/backlog.bench.ts [--sizes 100000,1000000] [--body BYTES] [--big-body BYTES]
//                               [--due N] [--drain-seconds S] [--accept-rounds N] [--keep]
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, futimesSync, mkdirSync, openSync, readFileSync, utimesSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hashPassword } from '@sluice/relay/password';
import { runQueueCli } from '@sluice/relay/queue-cli';
import { newQueueId } from '@sluice/relay/queue-id';
import type { SpooledEnvelope } from '@sluice/relay/spool-envelope';
import { envelopeTrailer } from '@sluice/relay/spool-message-file';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { runLoad } from './loadgen.ts';
import { cpuSeconds, memoryStatus } from './proc-stats.ts';
import { freePort, stopChild } from './util.ts';

/** Relay processes running, stopped whatever happens. */
const children = new Set<ChildProcess>();
// the relay's entry point, for a child process (resolving it does not load it)
const MAIN = fileURLToPath(import.meta.resolve('@sluice/relay/main'));
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000' },
    body: { type: 'string', default: '10000' },
    // bodies of the largest size: 1,000,000 × 10 KB is 10 GB before the file-system's blocks
    'big-body': { type: 'string', default: '2000' },
    due: { type: 'string', default: '5000' },
    'drain-seconds': { type: 'string', default: '300' },
    'accept-rounds': { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
  },
});
const sizes = values.sizes.split(',').map(Number);
const DUE = Number(values.due);
const DRAIN_SECONDS = Number(values['drain-seconds']);
const DOMAINS = 5_000;
const USER = 'bench';
const PASSWORD = 'bench-password-backlog';
const TOKEN = 'bench-token';

/** A destination that defers every message (451 to MAIL) or takes every one; counts what it sees. */
class Destination {
  mode: 'defer' | 'accept' = 'defer';
  mails = 0;
  delivered = 0;
  readonly #server = net.createServer((socket) => this.#serve(socket));
  readonly #sockets = new Set<net.Socket>();

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', resolve));
  }

  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    let data = false;
    let buffer = '';
    /** MAIL was answered 250 in this transaction. */
    let open = false;
    socket.setEncoding('latin1');
    socket.write('220 destination.bench ESMTP\r\n');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const out: string[] = [];
      for (;;) {
        if (data) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) {
            buffer = buffer.slice(Math.max(0, buffer.length - 4));
            break;
          }
          buffer = buffer.slice(end + 5);
          data = false;
          this.delivered++;
          out.push('250 2.0.0 ok\r\n');
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) break;
        const line = buffer.slice(0, eol).toUpperCase();
        buffer = buffer.slice(eol + 2);
        if (line.startsWith('EHLO')) out.push('250-destination.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (line.startsWith('MAIL')) {
          this.mails++;
          open = this.mode === 'accept';
          out.push(open ? '250 2.1.0 ok\r\n' : '451 4.7.1 try again later\r\n');
        } else if (line.startsWith('RCPT'))
          out.push(open ? '250 2.1.5 ok\r\n' : '503 5.5.1 no transaction\r\n');
        else if (line === 'DATA') {
          data = open;
          out.push(open ? '354 go\r\n' : '503 5.5.1 no transaction\r\n');
          open = false;
        } else if (line === 'RSET') {
          open = false;
          out.push('250 ok\r\n');
        } else if (line === 'QUIT') {
          out.push('221 bye\r\n');
          socket.end(out.join(''));
          return;
        } else out.push('250 ok\r\n');
      }
      if (out.length > 0) socket.write(out.join(''));
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** The spool of a relay that has tried every message once: ids oldest first, and the ones to make due. */
function writeSpool(
  spoolDir: string,
  count: number,
  bodyBytes: number,
): { ids: string[]; rareSender: string } {
  const queueDir = join(spoolDir, 'queue');
  mkdirSync(queueDir, { recursive: true });
  const now = Date.now();
  const line = `${'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv'}\r\n`;
  const body = Buffer.from(
    `From: sender@customer.bench\r\nTo: someone@elsewhere.bench\r\nSubject: queued\r\n\r\n${line.repeat(Math.max(1, Math.ceil(bodyBytes / line.length)))}`.slice(
      0,
      bodyBytes,
    ),
    'latin1',
  );
  const ids: string[] = [];
  const rareSender = 'rare@customer.bench';
  for (let i = 0; i < count; i++) {
    // arrival over the last 30 minutes, oldest first
    const queueId = newQueueId(now - 1_800_000 + Math.floor((i * 1_800_000) / count));
    ids.push(queueId);
    const recipients = [0, 1].map((k) => `user${i}@d${(i * 2 + k) % DOMAINS}.bench`);
    const committed: SpooledEnvelope = {
      version: 1,
      queueId,
      receivedAt: new Date(now - 1_800_000).toISOString(),
      sender: i % 1000 === 0 ? rareSender : `sender${i % 50}@customer.bench`,
      recipients: recipients.map((address) => ({ address, state: 'pending' })),
      droppedRecipients: 0,
      user: USER,
      clientIp: '192.0.2.1',
      clientHelo: 'client.bench',
      listener: 'submission',
      tls: false,
      size: body.length,
      sessionId: 'bench',
      crlfOnly: true,
    };
    const fd = openSync(join(queueDir, `${queueId}.msg`), 'w');
    writeSync(fd, body);
    writeSync(fd, envelopeTrailer(committed));
    closeSync(fd);
    // the next attempt one to two hours ahead: nothing is due
    const dueAt = now + 3_600_000 + (i % 3_600) * 1000;
    const deferred: SpooledEnvelope = {
      ...committed,
      attempts: 1,
      nextAttemptAt: new Date(dueAt).toISOString(),
      recipients: recipients.map((address) => ({
        address,
        state: 'deferred',
        attempts: 1,
        response: '451 4.7.1 try again later',
        status: '4.7.1',
        remoteHost: '127.0.0.1',
      })),
    };
    const json = openSync(join(queueDir, `${queueId}.json`), 'w');
    writeSync(json, JSON.stringify(deferred));
    futimesSync(json, new Date(), new Date(dueAt));
    closeSync(json);
  }
  return { ids, rareSender };
}

interface RelayProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  adminPort: number;
  logFile: string;
  spawnedAt: number;
  /** spawn → first 220 greeting, ms */
  firstGreetingMs: number;
}

async function startRelay(workDir: string, destinationPort: number): Promise<RelayProcess> {
  const usersFile = join(workDir, 'users.json');
  await writeFile(
    usersFile,
    JSON.stringify({ users: [{ username: USER, passwordHash: await hashPassword(PASSWORD) }] }),
  );
  await writeFile(join(workDir, 'token'), `${TOKEN}\n`);
  const config = {
    hostname: 'sluice.bench',
    listeners: [{ name: 'submission', address: '127.0.0.1', port: 0, tls: 'none' }],
    auth: { allowPlaintext: true },
    limits: { maxConnectionsPerIp: 1000 },
    rateLimits: { perUser: [], concurrentConnectionsPerIp: 1000 },
    dnsbl: { enabled: false },
    delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: destinationPort, tls: 'none' } },
    state: { backend: 'memory' },
    spoolDir: join(workDir, 'spool'),
    stateDir: join(workDir, 'state'),
    usersFile,
    admin: { address: '127.0.0.1', port: 0, tokenFile: join(workDir, 'token') },
    log: { level: 'info' },
  };
  const configFile = join(workDir, 'config.json');
  await writeFile(configFile, JSON.stringify(config));
  const logFile = join(workDir, 'sluice.log');
  const out = openSync(logFile, 'a');
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [MAIN, '--config', configFile], { stdio: ['ignore', out, out] });
  closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));
  process.once('exit', () => child.kill('SIGKILL'));
  const started = await waitFor(
    'the relay to start',
    () => {
      const text = readText(logFile);
      const line = text.split('\n').find((l) => l.includes('"event":"started"'));
      return line ? (JSON.parse(line) as { ports: Record<string, number>; adminPort: number }) : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 5 },
  );
  const port = started.ports.submission ?? 0;
  await greeting(port);
  const firstGreetingMs = performance.now() - spawnedAt;
  return {
    child,
    pid: child.pid ?? 0,
    port,
    adminPort: started.adminPort,
    logFile,
    spawnedAt,
    firstGreetingMs,
  };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Connects and reads the greeting. */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('latin1');
    socket.once('data', (text: string) => {
      socket.end('QUIT\r\n');
      if (text.startsWith('220')) resolve(text);
      else reject(new Error(`greeting: ${text}`));
    });
    socket.once('error', reject);
  });
}

function logEvent(relay: RelayProcess, event: string): Record<string, unknown> | undefined {
  const line = readText(relay.logFile)
    .split('\n')
    .find((l) => l.includes(`"event":"${event}"`));
  return line ? (JSON.parse(line) as Record<string, unknown>) : undefined;
}

async function api(
  relay: RelayProcess,
  method: string,
  path: string,
): Promise<{ ms: number; body: unknown }> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${relay.adminPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const body = (await response.json()) as unknown;
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - started, body };
}

async function queueTotal(relay: RelayProcess): Promise<number> {
  const { body } = await api(relay, 'GET', '/queue?limit=1');
  return (body as { total: number }).total;
}

const mib = (kb: number) => kb / 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Relay CPU seconds over a window of wall time. */
async function cpuOver(pid: number, ms: number): Promise<number> {
  const before = cpuSeconds(pid);
  await sleep(ms);
  return cpuSeconds(pid) - before;
}

async function acceptance(port: number, runId: string): Promise<number> {
  const result = await runLoad({
    port,
    connections: 20,
    messagesPerConnection: 25,
    recipients: 3,
    messageBytes: 10_000,
    pipelining: true,
    starttls: false,
    auth: { user: USER, password: PASSWORD },
    runId,
  });
  if (result.refused > 0) throw new Error(`load refused ${result.refused}: ${result.errors.join('; ')}`);
  return result.msgsPerSecond;
}

interface SizeResult {
  size: number;
  bodyBytes: number;
  writeSeconds: number;
  diskMiB: number;
  firstGreetingMs: number;
  emptyFirstGreetingMs: number;
  emptyRssMiB: number;
  scanSeconds: number;
  rssAfterScanMiB: number;
  hwmAfterScanMiB: number;
  idleCpuPercent: number;
  due: number;
  passSeconds: number;
  passCpuSeconds: number;
  rssAfterPassMiB: number;
  listing: Array<[string, number, number]>;
  cliSeconds: number;
  acceptBacklog: number[];
  acceptEmpty: number[];
  drainedMessages: number;
  drainSeconds: number;
  drainComplete: boolean;
  hwmMiB: number;
}

async function measure(size: number, root: string): Promise<SizeResult> {
  const bodyBytes = size >= 1_000_000 ? Number(values['big-body']) : Number(values.body);
  const workDir = join(root, `backlog-${size}`);
  await mkdir(workDir, { recursive: true });
  const destinationPort = await freePort();
  const destination = new Destination();
  await destination.listen(destinationPort);

  process.stderr.write(`[${size}] writing the spool (${bodyBytes} B bodies)\n`);
  let t = performance.now();
  const { ids, rareSender } = writeSpool(join(workDir, 'spool'), size, bodyBytes);
  const writeSeconds = (performance.now() - t) / 1000;
  const diskMiB = Number((await du(join(workDir, 'spool'))) / 1024);

  // a fixed number come due together a while after the start: the retry pass
  const dueCount = Math.min(DUE, size);
  const dueAfterMs = 30_000 + size / 10; // past the scan, with room to spare on a loaded machine
  const dueAt = new Date(Date.now() + dueAfterMs);
  for (let i = 0; i < dueCount; i++) {
    const id = ids[Math.floor((i * size) / dueCount)]!;
    utimesSync(join(workDir, 'spool', 'queue', `${id}.json`), new Date(), dueAt);
  }

  process.stderr.write(`[${size}] starting the relay\n`);
  const relay = await startRelay(workDir, destinationPort);
  const loaded = await waitFor('the scan', () => logEvent(relay, 'queue_loaded'), {
    timeoutMs: 600_000,
    intervalMs: 50,
  });
  const scanSeconds = Number(loaded.seconds);
  if (Number(loaded.messages) !== size) throw new Error(`scan found ${loaded.messages} of ${size}`);
  const afterScan = memoryStatus(relay.pid) ?? { rssKb: 0, hwmKb: 0 };

  // nothing due: what the relay costs while it waits
  const idleWindowMs = Math.min(10_000, dueAt.getTime() - Date.now() - 2_000);
  if (idleWindowMs < 3_000)
    throw new Error('the scan took too long to measure the idle relay before the pass');
  const idleCpu = await cpuOver(relay.pid, idleWindowMs);
  const idleCpuPercent = (idleCpu * 100) / (idleWindowMs / 1000);
  if (destination.mails !== 0) throw new Error(`${destination.mails} attempts before anything was due`);

  // the retry pass
  await sleep(Math.max(0, dueAt.getTime() - Date.now() - 500));
  process.stderr.write(`[${size}] retry pass of ${dueCount}\n`);
  const passCpuBefore = cpuSeconds(relay.pid);
  t = performance.now();
  await waitFor('the retry pass', () => destination.mails >= dueCount, {
    timeoutMs: 600_000,
    intervalMs: 20,
  });
  // their deferrals are written: the relay goes quiet again
  await waitFor(
    'no message active',
    async () =>
      ((await api(relay, 'GET', '/queue?state=active&limit=1')).body as { messages: unknown[] }).messages
        .length === 0,
    { timeoutMs: 600_000, intervalMs: 50 },
  );
  const passSeconds = (performance.now() - t) / 1000 - 0.5;
  const passCpuSeconds = cpuSeconds(relay.pid) - passCpuBefore;
  if (destination.mails > dueCount)
    process.stderr.write(`[${size}] ${destination.mails - dueCount} extra attempts\n`);
  const afterPass = memoryStatus(relay.pid) ?? { rssKb: 0, hwmKb: 0 };

  // the listing
  const listing: Array<[string, number, number]> = [];
  const list = async (what: string, path: string) => {
    const { ms, body } = await api(relay, 'GET', path);
    listing.push([what, ms, (body as { messages: unknown[] }).messages.length]);
  };
  await list('first page (100)', '/queue?limit=100');
  await list('first page (1,000)', '/queue?limit=1000');
  await list('page from a cursor at 90 %', `/queue?limit=100&cursor=${ids[Math.floor(size * 0.9)]}`);
  await list('state=due (index only)', '/queue?state=due&limit=100');
  await list('newerThan=600 (arrival from the id)', '/queue?newerThan=600&limit=100');
  await list('sender 1 in 1,000 (reads up to 2,000 envelopes)', `/queue?sender=${rareSender}&limit=100`);
  await list('recipient domain 1 in 5,000', '/queue?domain=d7.bench&limit=100');
  const sink = new PassThrough();
  sink.resume();
  t = performance.now();
  const code = await runQueueCli(['list', '--limit', '10000', '--page-size', '1000'], {
    stdout: sink,
    stderr: process.stderr,
    url: `http://127.0.0.1:${relay.adminPort}`,
    token: TOKEN,
  });
  const cliSeconds = (performance.now() - t) / 1000;
  if (code !== 0) throw new Error('queue list failed');

  // acceptance: this relay with its backlog, and the same over an empty queue, alternating
  process.stderr.write(`[${size}] acceptance, backlog vs empty\n`);
  const emptyDir = join(root, `empty-${size}`);
  await mkdir(emptyDir, { recursive: true });
  const empty = await startRelay(emptyDir, destinationPort);
  const emptyRssMiB = mib(memoryStatus(empty.pid)?.rssKb ?? 0);
  await acceptance(relay.port, `warm-b-${size}`);
  await acceptance(empty.port, `warm-e-${size}`);
  const acceptBacklog: number[] = [];
  const acceptEmpty: number[] = [];
  for (let round = 0; round < Number(values['accept-rounds']); round++) {
    const order = round % 2 === 0 ? (['b', 'e'] as const) : (['e', 'b'] as const);
    for (const which of order) {
      if (which === 'b') acceptBacklog.push(await acceptance(relay.port, `b-${size}-${round}`));
      else acceptEmpty.push(await acceptance(empty.port, `e-${size}-${round}`));
    }
  }
  const emptyFirstGreetingMs = empty.firstGreetingMs;
  await stopChild(empty.child);
  await rm(emptyDir, { recursive: true, force: true });

  // the destination accepts again; an operator flushes the queue
  process.stderr.write(`[${size}] drain\n`);
  destination.mode = 'accept';
  const before = destination.delivered;
  const queued = await queueTotal(relay);
  t = performance.now();
  await api(relay, 'POST', '/queue/retry');
  let drainComplete = false;
  const deadline = performance.now() + DRAIN_SECONDS * 1000;
  while (performance.now() < deadline) {
    await sleep(1000);
    if ((await queueTotal(relay)) === 0) {
      drainComplete = true;
      break;
    }
  }
  const drainSeconds = (performance.now() - t) / 1000;
  const drainedMessages = destination.delivered - before;
  const hwm = memoryStatus(relay.pid)?.hwmKb ?? 0;
  process.stderr.write(`[${size}] drained ${drainedMessages} of ${queued} in ${drainSeconds.toFixed(0)} s\n`);
  await stopChild(relay.child, 60_000);
  await destination.close();
  if (!values.keep) await rm(workDir, { recursive: true, force: true });
  return {
    size,
    bodyBytes,
    writeSeconds,
    diskMiB,
    firstGreetingMs: relay.firstGreetingMs,
    emptyFirstGreetingMs,
    emptyRssMiB,
    scanSeconds,
    rssAfterScanMiB: mib(afterScan.rssKb),
    hwmAfterScanMiB: mib(afterScan.hwmKb),
    idleCpuPercent,
    due: dueCount,
    passSeconds,
    passCpuSeconds,
    rssAfterPassMiB: mib(afterPass.rssKb),
    listing,
    cliSeconds,
    acceptBacklog,
    acceptEmpty,
    drainedMessages,
    drainSeconds,
    drainComplete,
    hwmMiB: mib(hwm),
  };
}

/** Disk use of a directory in KiB (du -sk). */
async function du(path: string): Promise<number> {
  const { execFileSync } = await import('node:child_process');
  return Number(execFileSync('du', ['-sk', path], { encoding: 'utf8' }).split('\t')[0]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const root = await mkdtemp(join(os.tmpdir(), 'sluice-backlog-'));
const results: SizeResult[] = [];
try {
  for (const size of sizes) results.push(await measure(size, root));
} catch (err: unknown) {
  process.stderr.write(`backlog bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
} finally {
  for (const child of children) await stopChild(child, 60_000);
  if (!values.keep) await rm(root, { recursive: true, force: true });
}
if (process.exitCode === 1) process.exit(1);

const n = (x: number, digits = 0) =>
  x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const cols = results.map((r) => `${n(r.size)} queued (${n(r.bodyBytes)} B bodies)`);
const row = (label: string, cell: (r: SizeResult) => string) =>
  `| ${label} | ${results.map(cell).join(' | ')} |`;
const report = [
  '# One relay with a large queue',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
  '',
  'Each message once attempted and deferred (its file and the envelope beside it, next attempt 1–2 h ahead), two recipients over 5,000 domains, smarthost delivery to a destination in the bench process that answers 451 until it is told to accept.',
  '',
  `| | ${cols.join(' | ')} |`,
  `| --- | ${cols.map(() => '---').join(' | ')} |`,
  row('spool written (s) / on disk (MiB)', (r) => `${n(r.writeSeconds, 0)} / ${n(r.diskMiB)}`),
  row(
    'start → first 220 (ms); same relay, empty spool',
    (r) => `${n(r.firstGreetingMs)}; ${n(r.emptyFirstGreetingMs)}`,
  ),
  row('scan of the spool, in the background (s)', (r) => n(r.scanSeconds, 1)),
  row(
    'RSS after the scan (MiB) / peak so far; same relay, empty spool',
    (r) => `${n(r.rssAfterScanMiB)} / ${n(r.hwmAfterScanMiB)}; ${n(r.emptyRssMiB)}`,
  ),
  row('CPU while nothing is due (% of a core)', (r) => n(r.idleCpuPercent, 2)),
  row('retry pass: messages due at once', (r) => n(r.due)),
  row(
    'retry pass: wall time (s) / relay CPU (s)',
    (r) => `${n(r.passSeconds, 1)} / ${n(r.passCpuSeconds, 2)}`,
  ),
  row('retry pass: CPU per due message (ms)', (r) => n((r.passCpuSeconds * 1000) / r.due, 2)),
  row('RSS after the pass (MiB)', (r) => n(r.rssAfterPassMiB)),
  ...(results[0]?.listing ?? []).map((_, i) =>
    row(
      `listing: ${results[0]?.listing[i]?.[0]} (ms, messages)`,
      (r) => `${n(r.listing[i]?.[1] ?? 0)} (${r.listing[i]?.[2]})`,
    ),
  ),
  row('CLI `queue list --limit 10000` (s)', (r) => n(r.cliSeconds, 2)),
  row('accept msgs/s with the backlog (alternating runs)', (r) =>
    r.acceptBacklog.map((x) => n(x)).join(', '),
  ),
  row('accept msgs/s, same setup, empty queue (alternating runs)', (r) =>
    r.acceptEmpty.map((x) => n(x)).join(', '),
  ),
  row('backlog ÷ empty (medians)', (r) => `${n((median(r.acceptBacklog) / median(r.acceptEmpty)) * 100)} %`),
  row(
    'drain once the destination accepts: messages / s',
    (r) =>
      `${n(r.drainedMessages)} in ${n(r.drainSeconds)} s (${n(r.drainedMessages / r.drainSeconds)}/s)${r.drainComplete ? '' : ', stopped there'}`,
  ),
  row('peak RSS over the whole run (MiB)', (r) => n(r.hwmMiB)),
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/backlog.md', import.meta.url), report);
