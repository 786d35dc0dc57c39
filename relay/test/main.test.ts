// The relay as a process, the way it runs in a pod: from a config file and a users
// file, reloading both on change and on SIGHUP without dropping open connections.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PASSWORD, RawSmtpClient, testPasswordHash, waitFor } from '../src/testing/index.ts';

const MAIN = new URL('../src/main.ts', import.meta.url).pathname;

function configYaml(dir: string, maxRecipients: number | string): string {
  return [
    'hostname: relay.test',
    'listeners:',
    '  - { name: plain, address: 127.0.0.1, port: 0, tls: none }',
    'auth: { allowPlaintext: true }',
    `limits: { maxRecipients: ${maxRecipients} }`,
    `spoolDir: ${join(dir, 'spool')}`,
    'stateDir: state',
    'usersFile: users.yaml',
    'admin: { address: 127.0.0.1, port: 0 }',
    '',
  ].join('\n');
}

async function usersYaml(names: string[]): Promise<string> {
  const hash = await testPasswordHash();
  return `users:\n${names.map((n) => `  - username: ${n}\n    passwordHash: '${hash}'\n`).join('')}`;
}

class RelayProcess {
  readonly lines: Array<Record<string, unknown>> = [];
  stderr = '';
  readonly child: ChildProcess;
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const p of parts) if (p.trim()) this.lines.push(JSON.parse(p) as Record<string, unknown>);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
  }
  events(event: string) {
    return this.lines.filter((l) => l.event === event);
  }
  async exited(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    return new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }
}

describe('relay process with config files', () => {
  let dir: string;
  let relay: RelayProcess;
  let port: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-main-'));
    await writeFile(join(dir, 'config.yaml'), configYaml(dir, 30));
    await writeFile(join(dir, 'users.yaml'), await usersYaml(['alice']));
    relay = new RelayProcess(['--config', join(dir, 'config.yaml')]);
    await waitFor(`relay started (${relay.stderr})`, () => relay.events('started').length > 0, {
      timeoutMs: 15_000,
    });
    const ports = relay.events('started')[0]?.ports as Record<string, number> | undefined;
    port = ports?.plain ?? 0;
  });
  after(async () => {
    relay.child.kill('SIGTERM');
    assert.equal(await relay.exited(), 0, 'SIGTERM is a clean shutdown');
    await rm(dir, { recursive: true, force: true });
  });

  it('applies a users-file change to new logins while an open session carries on', async () => {
    const open = await RawSmtpClient.connect(port);
    await open.greeting();
    await open.ehlo();
    assert.equal((await open.authPlain('alice', PASSWORD)).code, 235);

    await writeFile(join(dir, 'users.yaml'), await usersYaml(['alice', 'bob']));
    await waitFor('users applied', () => relay.events('config_applied').some((l) => l.which === 'users'), {
      timeoutMs: 10_000,
    });

    const bob = await RawSmtpClient.connect(port);
    await bob.greeting();
    await bob.ehlo();
    assert.equal((await bob.authPlain('bob', PASSWORD)).code, 235);
    await bob.quit();

    assert.equal((await open.command('NOOP')).code, 250, 'the open session survived the reload');
    const replies = await open.sendRaw('alice@example.com', ['x@example.net'], 'Subject: a\r\n\r\nb\r\n');
    assert.equal(replies.at(-1)?.code, 250);
    await open.quit();
  });

  it('applies a new recipient limit, rejects a bad config with one log line and keeps the old one', async () => {
    await writeFile(join(dir, 'config.yaml'), configYaml(dir, 2));
    await waitFor('config applied', () => relay.events('config_applied').some((l) => l.which === 'config'), {
      timeoutMs: 10_000,
    });
    const c = await RawSmtpClient.connect(port);
    await c.greeting();
    await c.ehlo();
    await c.authPlain('alice', PASSWORD);
    const codes = (
      await c.sendRaw('alice@example.com', ['a@x.test', 'b@x.test', 'c@x.test'], 'S: x\r\n\r\n')
    ).map((r) => r.code);
    assert.deepEqual(codes.slice(0, 4), [250, 250, 250, 452]);

    await writeFile(join(dir, 'config.yaml'), configYaml(dir, 0));
    await waitFor('bad config rejected', () => relay.events('config_rejected').length > 0, {
      timeoutMs: 10_000,
    });
    const rejected = relay.events('config_rejected');
    assert.equal(rejected.length, 1);
    assert.deepEqual(rejected[0]?.problems, [
      `${join(dir, 'config.yaml')}: limits.maxRecipients: got 0, expected an integer >= 1`,
    ]);
    const again = await c.sendRaw('alice@example.com', ['a@x.test', 'b@x.test', 'c@x.test'], 'S: x\r\n\r\n');
    assert.equal(again[3]?.code, 452, 'the old limit of 2 stays in force');
    await c.quit();
  });

  it('re-reads both files on SIGHUP', async () => {
    await writeFile(join(dir, 'config.yaml'), configYaml(dir, 5));
    relay.child.kill('SIGHUP');
    await waitFor('SIGHUP handled', () => relay.events('sighup_reload').length > 0, { timeoutMs: 10_000 });
    await waitFor(
      'the new config is in force',
      () => relay.events('config_applied').filter((l) => l.which === 'config').length >= 2,
      { timeoutMs: 10_000 },
    );
  });
});

describe('relay process start-up errors', () => {
  it('refuses to start on an invalid config and names the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-main-bad-'));
    try {
      await writeFile(join(dir, 'config.yaml'), configYaml(dir, '"thirty"'));
      await writeFile(join(dir, 'users.yaml'), await usersYaml(['alice']));
      const p = new RelayProcess(['--config', join(dir, 'config.yaml')]);
      assert.equal(await p.exited(), 1);
      assert.match(p.stderr, /SLUICE_ERR_CONFIG_INVALID/);
      assert.match(p.stderr, /limits\.maxRecipients: got "thirty", expected an integer/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('hashes a password from stdin', async () => {
    const child = spawn(process.execPath, [MAIN, 'hash-password'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end('s3cret\n');
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 0);
    assert.match(out, /^\$scrypt\$ln=\d+,r=8,p=1\$[^$]+\$[^$]+\n$/);
  });
});

describe('relay process stopping for a rollout', () => {
  it('on SIGTERM reports not ready while it still accepts, and closes the listeners only after the wait', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-main-stop-'));
    const config = `${configYaml(dir, 30)}drain: { shutdownDelaySeconds: 600, sessionGraceSeconds: 5 }\n`;
    await writeFile(join(dir, 'config.yaml'), config);
    await writeFile(join(dir, 'users.yaml'), await usersYaml(['alice']));
    const relay = new RelayProcess(['--config', join(dir, 'config.yaml')]);
    try {
      await waitFor(`relay started (${relay.stderr})`, () => relay.events('started').length > 0, {
        timeoutMs: 15_000,
      });
      const started = relay.events('started')[0];
      const port = (started?.ports as Record<string, number> | undefined)?.plain ?? 0;
      const readyz = async () => (await fetch(`http://127.0.0.1:${started?.adminPort}/readyz`)).status;
      assert.equal(await readyz(), 200);

      relay.child.kill('SIGTERM');
      await waitFor('readiness to turn false', async () => (await readyz()) === 503, { timeoutMs: 10_000 });
      await waitFor('the shutdown log line', () => relay.events('shutdown').length > 0, {
        timeoutMs: 10_000,
      });
      assert.equal(relay.events('shutdown')[0]?.delaySeconds, 600);
      // endpoints that have not caught up yet still reach a relay that takes mail
      const late = await RawSmtpClient.connect(port);
      assert.equal((await late.greeting()).code, 220);
      await late.ehlo();
      assert.equal((await late.authPlain('alice', PASSWORD)).code, 235);
      const replies = await late.sendRaw('alice@example.com', ['x@example.net'], 'Subject: a\r\n\r\nb\r\n');
      assert.equal(replies.at(-1)?.code, 250, 'mail sent during the wait is accepted');
      await late.quit();
      assert.equal(relay.events('stopped').length, 0, 'still running during the wait');

      // a second signal ends the wait: the listeners close, the relay stops cleanly
      relay.child.kill('SIGTERM');
      assert.equal(await relay.exited(), 0);
      const order = relay.lines.map((l) => l.event);
      assert.ok(order.indexOf('readiness_off') < order.indexOf('stopped'));
      await assert.rejects(RawSmtpClient.connect(port), 'the listener is closed once the relay stops');
    } finally {
      if (relay.child.exitCode === null) relay.child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
