// A relay killed with SIGKILL while clients are sending loses nothing it acknowledged:
// after a restart, every message that got a 250 arrives, exactly once per recipient,
// counted at the receiving SMTP server.
//
// The downstream server is down while the load runs (deliveries defer), so the kill
// lands in the middle of accepting and spooling, which is what a 250 promises. A kill
// between a downstream server's 250 and the relay recording it can always repeat that
// one delivery (SMTP has no idempotence); that window is covered by the queue's own
// crash tests, which check that recipients recorded as delivered are never sent again.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PASSWORD, RawSmtpClient, startSmtpSink, testPasswordHash, waitFor } from '../src/testing/index.ts';

const MAIN = new URL('../src/main.ts', import.meta.url).pathname;

function start(configPath: string): { child: ChildProcess; ports: Promise<{ smtp: number; admin: number }> } {
  const child = spawn(process.execPath, [MAIN, '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffer = '';
  const ports = new Promise<{ smtp: number; admin: number }>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (const line of buffer.split('\n')) {
        if (!line.includes('"event":"started"')) continue;
        const started = JSON.parse(line) as { ports: { plain: number }; adminPort: number };
        resolve({ smtp: started.ports.plain, admin: started.adminPort });
      }
      buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}`)));
  });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  return { child, ports };
}

describe('kill -9 under load', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-crash-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('delivers every acknowledged message exactly once per recipient after a restart', async () => {
    // reserve the downstream port, but keep the server down during the load
    const probe = await startSmtpSink();
    const downstreamPort = probe.port;
    await probe.close();
    await writeFile(
      join(dir, 'users.yaml'),
      `users:\n  - username: alice\n    passwordHash: '${await testPasswordHash()}'\n`,
    );
    await writeFile(join(dir, 'token'), 'crash-test-token\n');
    await writeFile(
      join(dir, 'config.yaml'),
      [
        'hostname: relay.test',
        'listeners: [{ name: plain, address: 127.0.0.1, port: 0, tls: none }]',
        'auth: { allowPlaintext: true }',
        'dnsbl: { enabled: false }',
        'rateLimits: { perUser: [] }',
        'limits: { maxConnectionsPerIp: 100 }',
        `delivery: { mode: smarthost, smarthost: { host: 127.0.0.1, port: ${downstreamPort}, tls: none }, retry: { minBackoffSeconds: 1, maxBackoffSeconds: 2 } }`,
        'spoolDir: spool',
        'stateDir: state',
        'usersFile: users.yaml',
        'admin: { address: 127.0.0.1, port: 0, tokenFile: token }',
        'log: { level: info }',
        '',
      ].join('\n'),
    );
    const configPath = join(dir, 'config.yaml');

    const first = start(configPath);
    const { smtp } = await first.ports;
    const acked = new Set<string>();
    let stop = false;
    const client = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const id = `c${n}-m${i}`;
        try {
          const c = await RawSmtpClient.connect(smtp);
          await c.greeting();
          await c.ehlo();
          await c.authPlain('alice', PASSWORD);
          const replies = await c.sendRaw(
            'alice@example.com',
            [`a-${id}@example.net`, `b-${id}@example.org`],
            `Message-ID: <${id}@crash.test>\r\nSubject: ${id}\r\n\r\n${'payload line\r\n'.repeat(200)}`,
          );
          if (replies.at(-1)?.code === 250) acked.add(id);
          c.destroy();
        } catch {
          return; // the relay is gone
        }
      }
    };
    const clients = Array.from({ length: 8 }, (_, n) => client(n));
    await waitFor('messages accepted under load', () => acked.size >= 60, { timeoutMs: 30_000 });
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    stop = true;
    await Promise.all(clients);
    await exited;
    assert.ok(acked.size >= 60);

    const sink = await startSmtpSink({ port: downstreamPort });
    const second = start(configPath);
    try {
      const { admin } = await second.ports;
      const flush = () =>
        fetch(`http://127.0.0.1:${admin}/queue/retry`, {
          method: 'POST',
          headers: { authorization: 'Bearer crash-test-token' },
        });
      assert.equal((await flush()).status, 202);
      const delivered = () => {
        const seen = new Set<string>();
        for (const m of sink.messages) {
          const id = /Message-ID: <([^@]+)@crash\.test>/i.exec(m.raw.toString())?.[1];
          if (id) for (const r of m.recipients) seen.add(`${id} ${r}`);
        }
        return seen;
      };
      await waitFor(
        'every acknowledged message delivered',
        () =>
          [...acked].every(
            (id) =>
              delivered().has(`${id} a-${id}@example.net`) && delivered().has(`${id} b-${id}@example.org`),
          ),
        { timeoutMs: 60_000 },
      );
      // the queue drains completely (messages not acknowledged may still arrive, once)
      await waitFor(
        'the queue is empty',
        async () => {
          const res = await fetch(`http://127.0.0.1:${admin}/queue`, {
            headers: { authorization: 'Bearer crash-test-token' },
          });
          return ((await res.json()) as { total: number }).total === 0;
        },
        { timeoutMs: 60_000 },
      );
      const counts = new Map<string, number>();
      for (const m of sink.messages) {
        const id = /Message-ID: <([^@]+)@crash\.test>/i.exec(m.raw.toString())?.[1] ?? '?';
        for (const r of m.recipients) counts.set(`${id} ${r}`, (counts.get(`${id} ${r}`) ?? 0) + 1);
      }
      const duplicates = [...counts].filter(([, n]) => n > 1);
      assert.deepEqual(duplicates, [], 'no recipient got a message twice');
    } finally {
      const done = new Promise((resolve) => second.child.once('exit', resolve));
      second.child.kill('SIGTERM');
      await done;
      await sink.close();
    }
  });
});
