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
import { generate } from 'selfsigned';
import {
  PASSWORD,
  PLAIN_LISTENER,
  startRedisServer,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

/** A Secret volume with one key (`password` unless said), updated as the kubelet does: a new directory, then a symlink swap. */
async function secretVolume(root: string, value: string, key = 'password') {
  const dir = join(root, `secret-${key}`);
  await mkdir(dir);
  let version = 0;
  const write = async (text: string) => {
    version++;
    const data = join(dir, `..data-${version}`);
    await mkdir(data);
    await writeFile(join(data, key), `${text}\n`);
    await symlink(`..data-${version}`, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  await write(value);
  await symlink(`..data/${key}`, join(dir, key));
  return { path: join(dir, key), write };
}

type Pems = { key: string; cert: string };

/** A CA, and a server certificate for 127.0.0.1 that it issued. */
async function privatePki(name: string): Promise<{ ca: Pems; server: Pems }> {
  const ca = await generate([{ name: 'commonName', value: name }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const caPems = { key: ca.private, cert: ca.cert };
  const server = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keySize: 2048,
    algorithm: 'sha256',
    ca: caPems,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] },
    ],
  });
  return { ca: caPems, server: { key: server.private, cert: server.cert } };
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
  it('verifies the smarthost with a changed trusted CA file once it changes, without a restart', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sluice-rotate-ca-'));
    const old = await privatePki('Old Test CA');
    const current = await privatePki('Current Test CA');
    // the smarthost's certificate is issued by the current CA; the relay trusts the old one
    const smarthost = await startSmtpSink({ tls: true, certificate: current.server });
    const bundle = await secretVolume(root, old.ca.cert, 'ca.crt');
    const relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        tls: { trustedCaFile: bundle.path },
        delivery: {
          mode: 'smarthost',
          smarthost: { host: '127.0.0.1', port: smarthost.port, tls: 'starttls', rejectUnauthorized: true },
        },
      },
    });
    try {
      await send(relay, 'before');
      await waitFor(
        'the first message deferred: the certificate is not trusted',
        () => relay.logs.events('deferred').length === 1,
        { timeoutMs: 10_000 },
      );
      assert.equal(smarthost.messages.length, 0);

      await bundle.write(current.ca.cert);
      await waitFor('the new CA file read', () => reloaded(relay, 'tls.trustedCaFile') === 1, {
        timeoutMs: 10_000,
      });
      await send(relay, 'after');
      await smarthost.waitForMessages(1);
      assert.equal(smarthost.messages[0]?.tls, true, 'delivered over TLS verified with the new CA');
      assert.match(
        String(relay.logs.events('secret_reloaded').at(-1)?.msg ?? ''),
        /new connections use the new CA certificates/,
      );
    } finally {
      await relay.close();
      await smarthost.close();
      await rm(root, { recursive: true, force: true });
    }
  });

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
      await waitFor('the new password read', () => reloaded(relay, 'delivery.smarthost.passwordFile') === 1, {
        timeoutMs: 10_000,
      });

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
      await waitFor('shared state up', () => up() === 1, { timeoutMs: 10_000 });
      await admin.connect();

      await secret.write('second-secret');
      await waitFor('the new password read', () => reloaded(relay, 'state.redis.passwordFile') === 1, {
        timeoutMs: 10_000,
      });
      // Redis takes the new password and drops the relay's connection: it must log in again
      await admin.config('SET', 'requirepass', 'second-secret');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');

      await waitFor('shared state lost', () => relay.logs.events('shared_state_down').length === 1, {
        timeoutMs: 10_000,
      });
      await waitFor('shared state back with the new password', () => up() === 2, { timeoutMs: 10_000 });
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
