// The pieces of the kubelet shim that decide what a relay pod sees: volume files written
// kubelet's way, ConfigMap/Secret projection, the relay config as seen through the pod's
// namespaces, and the StatefulSet status. Fast, no API server.
import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { writeVolume } from './atomic-writer.ts';
import { MountTable, projectedPayload, VolumeSourceMissing } from './pod-volumes.ts';
import { rewriteRelayConfig } from './relay-pod-config.ts';
import { statefulSetStatus } from './statefulset-status.ts';

const files = (entries: Record<string, string>) =>
  new Map(Object.entries(entries).map(([k, v]) => [k, Buffer.from(v)]));

describe('volume files, kubelet style', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-volume-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a version directory, the ..data symlink and a symlink per key', async () => {
    const vol = join(dir, 'first');
    assert.equal(await writeVolume(vol, files({ 'config.yaml': 'a: 1\n' })), true);
    const version = await readlink(join(vol, '..data'));
    assert.match(version, /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+$/);
    assert.equal(await readlink(join(vol, 'config.yaml')), join('..data', 'config.yaml'));
    assert.equal(await readFile(join(vol, 'config.yaml'), 'utf8'), 'a: 1\n');
    assert.equal(await writeVolume(vol, files({ 'config.yaml': 'a: 1\n' })), false, 'same content: no write');
    assert.equal(await readlink(join(vol, '..data')), version);
  });

  it('swaps in a new version atomically, drops removed keys and the old version, and a directory watch sees it', async () => {
    const vol = join(dir, 'second');
    await writeVolume(vol, files({ 'users.yaml': 'old', gone: 'x' }));
    const old = await readlink(join(vol, '..data'));
    const watcher = watch(vol);
    const seen = new Promise<void>((resolve) => watcher.once('change', () => resolve()));
    await writeVolume(vol, files({ 'users.yaml': 'new', 'sub/nested': 'n' }));
    await seen;
    watcher.close();
    assert.equal(await readFile(join(vol, 'users.yaml'), 'utf8'), 'new');
    assert.equal(await readFile(join(vol, 'sub', 'nested'), 'utf8'), 'n');
    await assert.rejects(lstat(join(vol, 'gone')), { code: 'ENOENT' });
    assert.ok(!(await readdir(vol)).includes(old), 'the old version is removed');
  });
});

describe('ConfigMap and Secret projection', () => {
  const sources = {
    configMap: (name: string) => (name === 'cm' ? { data: { 'config.yaml': 'x' } } : undefined),
    secret: (name: string) =>
      name === 's'
        ? { data: { a: Buffer.from('A').toString('base64'), b: Buffer.from('B').toString('base64') } }
        : undefined,
  };

  it('takes every key, or only the items mapped to their paths', () => {
    assert.deepEqual(
      projectedPayload({ name: 'v', configMap: { name: 'cm' } }, sources),
      files({ 'config.yaml': 'x' }),
    );
    const mapped = projectedPayload(
      { name: 'v', secret: { secretName: 's', items: [{ key: 'b', path: 'password' }] } },
      sources,
    );
    assert.deepEqual(mapped, files({ password: 'B' }));
    assert.equal(projectedPayload({ name: 'v', emptyDir: {} }, sources), undefined);
    const projected = projectedPayload(
      {
        name: 'v',
        projected: {
          sources: [
            { configMap: { name: 'cm', items: [{ key: 'config.yaml', path: 'a.yaml' }] } },
            { configMap: { name: 'cm', items: [{ key: 'config.yaml', path: 'b.yaml' }] } },
          ],
        },
      },
      sources,
    );
    assert.deepEqual(
      [...(projected?.keys() ?? [])],
      ['a.yaml', 'b.yaml'],
      'a projected volume joins its sources',
    );
  });

  it('waits for a missing source or key, unless the volume is optional', () => {
    assert.throws(
      () => projectedPayload({ name: 'v', secret: { secretName: 'nope' } }, sources),
      VolumeSourceMissing,
    );
    assert.throws(
      () =>
        projectedPayload(
          { name: 'v', secret: { secretName: 's', items: [{ key: 'c', path: 'c' }] } },
          sources,
        ),
      VolumeSourceMissing,
    );
    assert.deepEqual(
      projectedPayload({ name: 'v', secret: { secretName: 'nope', optional: true } }, sources),
      new Map(),
    );
  });
});

describe('the relay config as a pod sees it', () => {
  const mounts = new MountTable(
    [
      { name: 'config', mountPath: '/etc/sluice/config' },
      { name: 'internal', mountPath: '/etc/sluice/internal' },
      { name: 'spool', mountPath: '/var/spool/sluice' },
    ],
    (volume) => `/node/pod-0/${volume}`,
    '/node/pod-0/rootfs',
  );
  const network = { podIp: '127.0.1.2', serviceIp: () => '127.0.1.1' };

  it('maps mounted paths, binds the pod IP and sends the Service name to a pod', () => {
    const text = [
      'listeners: [{ name: submission, address: 0.0.0.0, port: 587 }]',
      'spoolDir: /var/spool/sluice',
      'stateDir: /var/spool/sluice/state',
      'usersFile: /etc/sluice/users/users.yaml',
      'admin: { address: 0.0.0.0, port: 9587, tokenFile: /etc/sluice/internal/admin-token }',
      'drain: { handoff: { host: relay-smtp.mail.svc, port: 587, passwordFile: /etc/sluice/internal/handoff-password } }',
      '',
    ].join('\n');
    const config = parse(rewriteRelayConfig(text, mounts, network)) as Record<
      string,
      Record<string, unknown>
    >;
    assert.deepEqual(config.listeners, [{ name: 'submission', address: '127.0.1.2', port: 587 }]);
    assert.equal(config.spoolDir, '/node/pod-0/spool');
    assert.equal(config.stateDir, '/node/pod-0/spool/state');
    assert.equal(config.usersFile, '/etc/sluice/users/users.yaml', 'not mounted here: left alone');
    assert.deepEqual(config.admin, {
      address: '127.0.1.2',
      port: 9587,
      tokenFile: '/node/pod-0/internal/admin-token',
    });
    assert.deepEqual(config.drain?.handoff, {
      host: '127.0.1.1',
      port: 587,
      passwordFile: '/node/pod-0/internal/handoff-password',
    });
  });
});

describe('StatefulSet status', () => {
  const pod = (revision: string, ready = true, phase: 'Running' | 'Terminating' = 'Running') => ({
    phase,
    ready,
    revision,
  });

  it('keeps the current revision during a rollout and moves it when the rollout is complete', () => {
    const rolling = statefulSetStatus({
      generation: 3,
      replicas: 2,
      pods: [pod('r1'), pod('r1', false, 'Terminating')],
      updateRevision: 'r2',
      currentRevision: 'r1',
    });
    assert.deepEqual(
      { ...rolling },
      {
        observedGeneration: 3,
        replicas: 2,
        readyReplicas: 1,
        availableReplicas: 1,
        currentReplicas: 1,
        updatedReplicas: 0,
        currentRevision: 'r1',
        updateRevision: 'r2',
        collisionCount: 0,
      },
    );
    const done = statefulSetStatus({
      generation: 3,
      replicas: 2,
      pods: [pod('r2'), pod('r2')],
      updateRevision: 'r2',
      currentRevision: 'r1',
    });
    assert.equal(done.currentRevision, 'r2');
    assert.equal(done.updatedReplicas, 2);
    assert.equal(done.readyReplicas, 2);
  });
});
