// A relay with `workers: N`: N processes share the SMTP port (SO_REUSEPORT) and the
// spool, the primary serves the admin port for all of them. Real processes started from a
// config file, a real SMTP client and a real SMTP server downstream.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  type SmtpSink,
  startSmtpSink,
  startTestRelay,
  testPasswordHash,
  waitFor,
} from '../src/testing/index.ts';
import { parseExposition } from '../src/testing/metrics-scrape.ts';

const MAIN = new URL('../src/main.ts', import.meta.url).pathname;
const TOKEN = 'workers-test-token';
type Line = Record<string, unknown>;

class RelayProcess {
  readonly lines: Line[] = [];
  stderr = '';
  readonly child: ChildProcess;
  constructor(configPath: string) {
    this.child = spawn(process.execPath, [MAIN, '--config', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const p of parts) if (p.trim()) this.lines.push(JSON.parse(p) as Line);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
  }
  events(event: string): Line[] {
    return this.lines.filter((l) => l.event === event);
  }
  /** The primary's started line (the workers' own have a worker field). */
  async started(): Promise<{ smtp: number; admin: number }> {
    await waitFor(`relay started (${this.stderr})`, () => this.primary('started'), { timeoutMs: 30_000 });
    const line = this.primary('started') as { ports: { plain: number }; adminPort: number };
    return { smtp: line.ports.plain, admin: line.adminPort };
  }
  primary(event: string): Line | undefined {
    return this.events(event).find(
      (l) => l.worker === undefined || typeof l.worker !== 'number' || 'workers' in l,
    );
  }
  async exited(): Promise<{ code: number | null; signal: string | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null)
      return { code: this.child.exitCode, signal: this.child.signalCode };
    return new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }
}

async function writeConfig(
  dir: string,
  workers: number,
  downstreamPort: number,
  shutdownDelaySeconds = 0,
): Promise<string> {
  await writeFile(
    join(dir, 'users.yaml'),
    `users:\n  - username: alice\n    passwordHash: '${await testPasswordHash()}'\n`,
  );
  await writeFile(join(dir, 'token'), `${TOKEN}\n`);
  const path = join(dir, 'config.yaml');
  await writeFile(
    path,
    [
      'hostname: relay.test',
      `workers: ${workers}`,
      'listeners: [{ name: plain, address: 127.0.0.1, port: 0, tls: none }]',
      'auth: { allowPlaintext: true }',
      'dnsbl: { enabled: false }',
      'rateLimits: { perUser: [], concurrentConnectionsPerIp: 200 }',
      'limits: { maxConnectionsPerIp: 200 }',
      `delivery: { mode: smarthost, smarthost: { host: 127.0.0.1, port: ${downstreamPort}, tls: none }, retry: { minBackoffSeconds: 1, maxBackoffSeconds: 2 } }`,
      `drain: { shutdownDelaySeconds: ${shutdownDelaySeconds} }`,
      'spoolDir: spool',
      'stateDir: state',
      'usersFile: users.yaml',
      'admin: { address: 127.0.0.1, port: 0, tokenFile: token }',
      '',
    ].join('\n'),
  );
  return path;
}

function message(id: string): string {
  return `Message-ID: <${id}@workers.test>\r\nSubject: ${id}\r\n\r\n${`${id} line\r\n`.repeat(50)}`;
}

/** Sends one message on a connection of its own; resolves to the final reply code. */
async function send(port: number, id: string): Promise<number | undefined> {
  const c = await RawSmtpClient.connect(port);
  await c.greeting();
  await c.ehlo();
  await c.authPlain('alice', PASSWORD);
  const replies = await c.sendRaw('alice@example.com', [`to-${id}@example.net`], message(id));
  await c.quit();
  return replies.at(-1)?.code;
}

/** How many times each message id arrived at the sink. */
function arrivals(sink: SmtpSink): Map<string, number> {
  const seen = new Map<string, number>();
  for (const m of sink.messages) {
    const id = /Message-ID: <([^@]+)@workers\.test>/i.exec(m.raw.toString())?.[1];
    if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  return seen;
}

async function metricsText(admin: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${admin}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

describe('workers: 2', () => {
  let dir: string;
  let sink: SmtpSink;
  let relay: RelayProcess;
  let ports: { smtp: number; admin: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-workers-'));
    sink = await startSmtpSink();
    relay = new RelayProcess(await writeConfig(dir, 2, sink.port, 300));
    ports = await relay.started();
  });
  after(async () => {
    relay.child.kill('SIGKILL');
    await relay.exited();
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('spreads connections over both workers and delivers every message byte for byte', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `spread-${i}`);
    const codes = await Promise.all(ids.map((id) => send(ports.smtp, id)));
    assert.deepEqual(
      codes,
      ids.map(() => 250),
    );
    // log lines are written in batches: wait for both workers' (40 connections all on one
    // worker would be a 2^-39 chance of the kernel's hash)
    await waitFor(
      'both workers accepted mail',
      () => new Set(relay.events('accepted').map((l) => l.worker)).size === 2,
    );
    await sink.waitForMessages(ids.length, 30_000);
    assert.deepEqual(
      [...arrivals(sink).values()],
      ids.map(() => 1),
    );
    const first = sink.messages.find((m) => m.raw.toString().includes('<spread-0@'));
    assert.ok(
      first?.raw.toString().endsWith(message('spread-0')),
      'the message arrives as submitted, after the added trace header',
    );
  });

  it('serves the merged metrics under the names a single process uses', async () => {
    const merged = parseExposition(await metricsText(ports.admin));
    const single = await startTestRelay({ config: { listeners: [PLAIN_LISTENER] }, defaultMetrics: true });
    try {
      const alone = parseExposition(await metricsText(single.relay.adminPort));
      const missing = [...alone.keys()].filter((name) => !merged.has(name));
      assert.deepEqual(missing, [], 'every metric of a single process is in the merged output');
    } finally {
      await single.close();
    }
    const accepted = merged
      .get('sluice_smtp_messages_total')
      ?.samples.filter((s) => s.labels.result === 'accepted')
      .reduce((sum, s) => sum + s.value, 0);
    assert.ok((accepted ?? 0) >= 40, `the workers' counters are summed (${accepted})`);
    assert.equal(merged.get('sluice_workers')?.samples[0]?.value, 2);
    const started = merged.get('process_start_time_seconds')?.samples[0]?.value ?? 0;
    assert.ok(started > 1e9 && started <= Date.now() / 1000, `the primary's start time (${started})`);
    // flags are not summed: each worker's 1 stays 1
    assert.equal(merged.get('sluice_config_last_reload_successful')?.samples[0]?.value, 1);
    assert.equal(merged.get('sluice_build_info')?.samples[0]?.value, 1);
  });

  it('passes SIGHUP on to every worker', async () => {
    relay.child.kill('SIGHUP');
    await waitFor('both workers re-read the files', () =>
      [0, 1].every((w) => relay.events('sighup_reload').some((l) => l.worker === w)),
    );
  });

  it('is ready when every worker is, and answers the queue API for all of them', async () => {
    // each worker's own admin server, which the primary asks
    // (their log lines leave in batches: waited for, not read at once)
    const adminPorts = await waitFor('both workers started', () => {
      const found = relay
        .events('started')
        .flatMap((l) => (typeof l.worker === 'number' ? [l.adminPort] : []));
      return found.length >= 2 ? found : undefined;
    });
    assert.equal(new Set(adminPorts).size, 2, `two admin servers (${adminPorts.join(', ')})`);
    const ready = await fetch(`http://127.0.0.1:${ports.admin}/readyz`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as { checks: Array<{ name: string; ok: boolean }> };
    assert.deepEqual(
      body.checks.map((c) => c.name),
      ['workers', 'worker 0', 'worker 1'],
    );
    const unauthorized = await fetch(`http://127.0.0.1:${ports.admin}/queue`);
    assert.equal(unauthorized.status, 401, 'the bearer token is still required');
    const list = await fetch(`http://127.0.0.1:${ports.admin}/queue`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(list.status, 200);
    assert.deepEqual(await list.json(), { messages: [], total: 0, next: null, scanning: false });
  });

  it('on SIGTERM reports not ready at once, keeps accepting through the delay, then drains and exits 0', async () => {
    relay.child.kill('SIGTERM');
    await waitFor(
      'readiness off',
      async () => (await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).status === 503,
    );
    await waitFor('both workers report not ready', () =>
      [0, 1].every((w) => relay.events('readiness_off').some((l) => l.worker === w)),
    );
    assert.equal(await send(ports.smtp, 'during-delay'), 250, 'the listeners still accept during the delay');
    relay.child.kill('SIGTERM'); // a second signal ends the wait
    assert.deepEqual(await relay.exited(), { code: 0, signal: null });
    assert.deepEqual(
      relay
        .events('stopped')
        .filter((l) => typeof l.worker === 'number')
        .map((l) => l.worker)
        .sort(),
      [0, 1],
      'every worker stopped before the primary exited',
    );
  });
});

describe('workers: 3, then 2, then 1', () => {
  let dir: string;
  let downstreamPort: number;
  const relays: RelayProcess[] = [];
  const sinks: SmtpSink[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-workers-'));
    // the downstream port is reserved; the server stays down while mail is queued
    const probe = await startSmtpSink();
    downstreamPort = probe.port;
    await probe.close();
  });
  after(async () => {
    for (const relay of relays) {
      relay.child.kill('SIGKILL');
      await relay.exited();
    }
    for (const sink of sinks) await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('drains on SIGTERM, and after a restart with fewer workers delivers every queued message once', async () => {
    const first = new RelayProcess(await writeConfig(dir, 3, downstreamPort));
    relays.push(first);
    const { smtp } = await first.started();
    const ids = Array.from({ length: 30 }, (_, i) => `three-${i}`);
    assert.deepEqual(
      await Promise.all(ids.map((id) => send(smtp, id))),
      ids.map(() => 250),
    );
    // the kernel spreads 30 connections over 3 workers: all on one or two is a (2/3)^30 chance
    assert.ok(
      new Set(first.events('accepted').map((l) => l.worker)).size >= 2,
      'more than one worker queued mail',
    );
    await waitFor('a delivery attempt deferred', () => first.events('delivery_attempt').length > 0, {
      timeoutMs: 15_000,
    });

    first.child.kill('SIGTERM');
    assert.deepEqual(await first.exited(), { code: 0, signal: null }, 'SIGTERM drains and exits 0');
    const stopped = first.events('stopped');
    assert.deepEqual(
      stopped
        .filter((l) => typeof l.worker === 'number')
        .map((l) => l.worker)
        .sort(),
      [0, 1, 2],
      'every worker drained before the primary exited',
    );

    const sink = await startSmtpSink({ port: downstreamPort });
    sinks.push(sink);
    const second = new RelayProcess(await writeConfig(dir, 2, downstreamPort));
    relays.push(second);
    await second.started();
    await waitFor('every queued message delivered', () => ids.every((id) => arrivals(sink).has(id)), {
      timeoutMs: 60_000,
    });
    assert.ok(
      second.events('spool_adopted').some((l) => l.worker === 0),
      "worker 0 took over worker 2's spool (2 mod 2)",
    );
    await waitFor('the queue is empty', async () => {
      const list = await fetch(`http://127.0.0.1:${(await second.started()).admin}/queue`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      return ((await list.json()) as { total: number }).total === 0;
    });
    assert.deepEqual(
      ids.filter((id) => arrivals(sink).get(id) !== 1),
      [],
      'each message arrived exactly once',
    );
  });

  it('forks a worker that was killed again, and its queued mail is delivered', async () => {
    const relay = relays.at(-1) as RelayProcess;
    const { smtp, admin } = await relay.started();
    const sink = sinks.at(-1) as SmtpSink;
    await sink.close();
    const ids = Array.from({ length: 10 }, (_, i) => `killed-${i}`);
    const earlier = relay.events('accepted').length;
    assert.deepEqual(
      await Promise.all(ids.map((id) => send(smtp, id))),
      ids.map(() => 250),
    );
    // a worker that queued some of this mail (the destination is down); log lines leave in
    // batches, so the accepted lines may come a moment after the replies
    const accepted = await waitFor('the accepted lines of the ten messages', () => {
      const lines = relay.events('accepted').slice(earlier);
      return lines.length >= ids.length ? lines : undefined;
    });
    const victim = accepted[0]?.worker as number;

    // the queue API answers for both workers: a listing page by page, one message, a flush
    const auth = { authorization: `Bearer ${TOKEN}` };
    const listed: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page = await fetch(
        `http://127.0.0.1:${admin}/queue?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        { headers: auth },
      );
      assert.equal(page.status, 200);
      const body = (await page.json()) as {
        messages: Array<{ queueId: string }>;
        total: number;
        next: string | null;
      };
      assert.equal(body.total, 10, JSON.stringify(body));
      listed.push(...body.messages.map((m) => m.queueId));
      cursor = body.next;
    }
    assert.equal(new Set(listed).size, 10, 'every queued message listed once');
    for (const queueId of listed.slice(0, 2)) {
      const shown = await fetch(`http://127.0.0.1:${admin}/queue/${queueId}`, { headers: auth });
      assert.equal(shown.status, 200);
      assert.equal(((await shown.json()) as { queueId: string }).queueId, queueId);
    }
    const absent = await fetch(`http://127.0.0.1:${admin}/queue/0000000000000000000`, { headers: auth });
    assert.equal(absent.status, 404);
    const flush = await fetch(`http://127.0.0.1:${admin}/queue/retry`, { method: 'POST', headers: auth });
    assert.equal(flush.status, 202);
    assert.equal(((await flush.json()) as { scheduled: number }).scheduled, 10, 'the counts are summed');

    const ready = relay
      .events('worker_ready')
      .filter((l) => l.worker === victim)
      .at(-1);
    assert.ok(ready?.pid, `worker ${victim} said it was ready, with its pid`);
    process.kill(ready.pid as number, 'SIGKILL');
    await waitFor('the worker exit is logged', () =>
      relay.events('worker_exit').some((l) => l.worker === victim && l.signal === 'SIGKILL'),
    );
    // scraping while the worker is gone or starting answers with the others' metrics
    assert.equal((await fetch(`http://127.0.0.1:${admin}/metrics`)).status, 200);
    await waitFor(
      'the worker is forked again and serves',
      () => relay.events('worker_ready').filter((l) => l.worker === victim).length >= 2,
      { timeoutMs: 30_000 },
    );
    const restarts = parseExposition(await metricsText(admin)).get('sluice_worker_restarts_total');
    assert.equal(restarts?.samples[0]?.value, 1);
    const again = await startSmtpSink({ port: downstreamPort });
    sinks.push(again);
    await waitFor('every message delivered', () => ids.every((id) => arrivals(again).has(id)), {
      timeoutMs: 60_000,
    });
  });

  it('back to one process, delivers what the workers left queued', async () => {
    const relay = relays.at(-1) as RelayProcess;
    const { smtp } = await relay.started();
    const sink = sinks.at(-1) as SmtpSink;
    await sink.close();
    const ids = Array.from({ length: 10 }, (_, i) => `single-${i}`);
    assert.deepEqual(
      await Promise.all(ids.map((id) => send(smtp, id))),
      ids.map(() => 250),
    );
    relay.child.kill('SIGTERM');
    assert.deepEqual(await relay.exited(), { code: 0, signal: null });

    const again = await startSmtpSink({ port: downstreamPort });
    sinks.push(again);
    const single = new RelayProcess(await writeConfig(dir, 1, downstreamPort));
    relays.push(single);
    await single.started();
    await waitFor('every message delivered', () => ids.every((id) => arrivals(again).has(id)), {
      timeoutMs: 60_000,
    });
    await waitFor(
      'the single process took over the worker spools',
      () => single.events('spool_adopted').length > 0,
    );
    assert.deepEqual(
      ids.filter((id) => arrivals(again).get(id) !== 1),
      [],
    );
  });
});
