// The relay and operator images, as far as they can be checked without a Docker engine:
// each Dockerfile's steps are carried out into a directory (image-build.ts: the build
// context filtered by .dockerignore, `npm ci --omit=dev` for real, the stages' COPYs), and
// the image's ENTRYPOINT runs there as its USER. This catches a runtime dependency that
// is only a devDependency, a source file that .dockerignore or a COPY leaves out, and an
// entrypoint that does not start. The base image is not there (Node 24 is this machine's).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type BuiltImage, buildImage } from './image-build.ts';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const NODE_BIN = dirname(process.execPath);
const asRoot = process.getuid?.() === 0;

/** Runs the image's entrypoint (and command, unless replaced) in its directory, as its user. */
function start(image: BuiltImage, args: string[] | undefined, env: Record<string, string>): ChildProcess {
  const [command, ...entry] = [...image.entrypoint, ...(args ?? image.cmd)];
  assert.equal(command, 'node', 'the images run node');
  const child = spawn(process.execPath, entry, {
    cwd: join(image.root, image.workdir),
    env: { PATH: `${NODE_BIN}:/usr/bin:/bin`, ...image.env, ...env },
    // the USER of the image where this runs as root; otherwise this user
    ...(asRoot && image.user ? { uid: image.user.uid, gid: image.user.gid } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return child;
}

/** Resolves with the first line of the output that matches, rejects if the process exits first. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolveLine, reject) => {
    let output = '';
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} in ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const line = output.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) {
        clearTimeout(timer);
        resolveLine(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before ${pattern}:\n${output}`));
    });
  });
}

function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((done) => {
    child.once('exit', (code) => done(code));
    child.kill('SIGTERM');
  });
}

function greeting(port: number): Promise<string> {
  return new Promise((done, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('error', reject);
    socket.once('data', (chunk) => {
      socket.end('QUIT\r\n');
      done(chunk.toString().split('\r\n')[0] ?? '');
    });
  });
}

/** Files of the image's own sources (not node_modules) that are test code: tests, test kits, fixtures. */
async function testCode(image: BuiltImage): Promise<string[]> {
  const app = join(image.root, image.workdir);
  const files = await readdir(app, { recursive: true }).catch(() => [] as string[]);
  return files
    .filter((f) => !f.startsWith('node_modules') && f.endsWith('.ts'))
    .filter((f) => /\.test\.ts$|(^|\/)testing\/|fixture|test-kit|contract/.test(f));
}

describe('container images (built without Docker)', { timeout: 600_000 }, () => {
  let dir: string;
  const buildEnv = {
    ...process.env,
    PATH: `${NODE_BIN}:${process.env.PATH ?? ''}`,
    npm_config_audit: 'false',
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-images-'));
    // the image's user must reach the image's files, as in a container
    await chmod(dir, 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The image of relay/Dockerfile or operator/Dockerfile, carried out under the test's directory. */
  const build = (component: 'relay' | 'operator') =>
    buildImage({
      context: REPO,
      dockerfile: join(REPO, component, 'Dockerfile'),
      into: join(dir, component),
      env: buildEnv,
    });

  it('relay: the image holds what the relay needs, and serves SMTP as uid 10001', async () => {
    const image = await build('relay');
    assert.deepEqual(image.user, { uid: 10001, gid: 10001 });
    assert.equal(image.env.NODE_ENV, 'production');
    assert.deepEqual(await testCode(image), [], 'the image carries no test code');
    // what the pod mounts: its config, users file and a spool volume owned by the pod's user
    const volumes = join(dir, 'relay-volumes');
    await mkdir(join(volumes, 'spool'), { recursive: true });
    if (asRoot) await chown(join(volumes, 'spool'), 10001, 10001);
    const config = join(volumes, 'config.json');
    await writeFile(join(volumes, 'users.json'), JSON.stringify({ users: [] }));
    await writeFile(
      config,
      JSON.stringify({
        hostname: 'relay.image.test',
        listeners: [{ name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' }],
        spoolDir: join(volumes, 'spool', 'queue'),
        stateDir: join(volumes, 'spool', 'state'),
        usersFile: join(volumes, 'users.json'),
        admin: { address: '127.0.0.1', port: 0 },
        dnsbl: { enabled: false },
      }),
    );
    // the CMD names the ConfigMap's path; the pod's args point at the mounted file the same way
    assert.deepEqual(image.cmd, ['--config', '/etc/sluice/config/config.yaml']);
    const relay = start(image, ['--config', config], {});
    try {
      const started = JSON.parse(await waitForLine(relay, /"event":"started"/)) as {
        ports: { submission: number };
        adminPort: number;
      };
      assert.match(await greeting(started.ports.submission), /^220 relay\.image\.test ESMTP/);
      const ready = await fetch(`http://127.0.0.1:${started.adminPort}/readyz`);
      assert.equal(ready.status, 200);
    } finally {
      assert.equal(await stop(relay), 0, 'a clean exit on SIGTERM');
    }
  });

  it('operator: the image holds what the operator needs, and serves /healthz as uid 10001', async () => {
    const image = await build('operator');
    assert.deepEqual(image.user, { uid: 10001, gid: 10001 });
    assert.deepEqual(await testCode(image), [], 'the image carries no test code');
    // no API server here: the operator starts, serves its admin port and waits for one
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]',
        'users: [{name: none, user: {token: none}}]',
        'contexts: [{name: none, context: {cluster: none, user: none}}]',
        'current-context: none',
        '',
      ].join('\n'),
    );
    const probe = net.createServer();
    await new Promise<void>((listening) => probe.listen(0, '127.0.0.1', listening));
    const address = probe.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise((closed) => probe.close(closed));
    const operator = start(image, undefined, {
      KUBECONFIG: kubeconfig,
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: String(port),
      LEADER_ELECT: 'false',
      USAGE_INTERVAL_SECONDS: '0',
    });
    try {
      let healthz: Response | undefined;
      for (let i = 0; i < 100 && !healthz; i++) {
        healthz = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
        if (!healthz) await new Promise((later) => setTimeout(later, 200));
        if (operator.exitCode !== null) break;
      }
      assert.ok(healthz, `the operator serves /healthz (exit code ${operator.exitCode})`);
      assert.equal(healthz.status, 200);
    } finally {
      await stop(operator);
    }
  });
});
