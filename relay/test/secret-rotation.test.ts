// Passwords rotated under a running relay: Kubernetes rewrites a mounted Secret's file
// (a `..data` symlink swap, played here the same way), and the relay's next connection
// to Redis or to the smarthost uses the new password, without a restart.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import nodemailer from 'nodemailer';
import {
  PASSWORD,
  PLAIN_LISTENER,
  startRedisServer,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

/** A Secret volume with one key, `password`, updated as the kubelet does: a new directory, then a symlink swap. */
async function secretVolume(root: string, password: string) {
  const dir = join(root, 'secret');
  await mkdir(dir);
  let version = 0;
  const write = async (value: string) => {
    version++;
    const data = join(dir, `..data-${version}`);
    await mkdir(data);
    await writeFile(join(data, 'password'), `${value}\n`);
    await symlink(`..data-${version}`, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  await write(password);
  await symlink('..data/password', join(dir, 'password'));
  return { path: join(dir, 'password'), write };
}

function send(t: TestRelay, subject: string) {
  return nodemailer
    .createTransport({
      host: '127.0.0.1',
      port: t.port('plain'),
      ignoreTLS: true,
      auth: { user: 'alice', pass: PASSWORD },
    })
    .sendMail({ from: 'alice@example.com', to: 'bob@example.net', subject, text: 'x' });
}

const reloaded = (t: TestRelay, field: string) =>
  t.logs.events('secret_reloaded').filter((l) => l.field === field).length;

describe('rotated passwords', () => {
  it('connects to the smarthost with the new password once its file changes', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sluice-rotate-smarthost-'));
    const smarthost = await startSmtpSink({ auth: { username: 'relay', password: 'first-secret' } });
    const secret = await secretVolume(root, 'first-secret');
    const relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: {
          mode: 'smarthost',
          smarthost: {
            host: '127.0.0.1',
            port: smarthost.port,
            tls: 'none',
            username: 'relay',
            passwordFile: secret.path,
          },
        },
      },
    });
    try {
      await send(relay, 'before');
      await smarthost.waitForMessages(1);

      // the smarthost takes only the new password from now on, and its open sessions end
      smarthost.setAuth({ username: 'relay', password: 'second-secret' });
      smarthost.dropConnections();
      await secret.write('second-secret');
      await waitFor(
        () => reloaded(relay, 'delivery.smarthost.passwordFile') === 1,
        'the new password read',
        10_000,
      );

      await send(relay, 'after');
      await smarthost.waitForMessages(2);
      assert.deepEqual(
        smarthost.messages.map((m) => m.authUser),
        ['relay', 'relay'],
      );
      assert.equal(smarthost.connections, 2, 'the second message came over a new connection');
      assert.equal(
        relay.logs.raw.some((l) => l.includes('second-secret')),
        false,
        'the password is never logged',
      );
    } finally {
      await relay.close();
      await smarthost.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('reconnects to Redis with the new password once its file changes', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sluice-rotate-redis-'));
    const redis = await startRedisServer({ args: ['--requirepass', 'first-secret'] });
    const secret = await secretVolume(root, 'first-secret');
    const admin = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      password: 'first-secret',
      lazyConnect: true,
    });
    const relay = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        state: {
          backend: 'redis',
          namespace: 'rotate',
          redis: { nodes: redis.nodes, passwordFile: secret.path },
        },
      },
    });
    const up = () => relay.logs.events('shared_state_up').length;
    try {
      await waitFor(() => up() === 1, 'shared state up', 10_000);
      await admin.connect();

      await secret.write('second-secret');
      await waitFor(() => reloaded(relay, 'state.redis.passwordFile') === 1, 'the new password read', 10_000);
      // Redis takes the new password and drops the relay's connection: it must log in again
      await admin.config('SET', 'requirepass', 'second-secret');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');

      await waitFor(() => relay.logs.events('shared_state_down').length === 1, 'shared state lost', 10_000);
      await waitFor(() => up() === 2, 'shared state back with the new password', 10_000);
      // what an SRE sees: readiness detail and the metric say the state is shared again
      const readyz = (await (await fetch(`http://127.0.0.1:${relay.relay.adminPort}/readyz`)).json()) as {
        checks: Array<{ name: string; detail: string }>;
      };
      assert.equal(readyz.checks.find((c) => c.name === 'state')?.detail, 'shared state in Redis');
      assert.match(await relay.relay.metrics.registry.metrics(), /^sluice_state_shared 1$/m);
    } finally {
      admin.disconnect();
      await relay.close();
      await redis.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});
