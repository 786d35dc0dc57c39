// The relay's image on the real node: built from relay/Dockerfile on a Debian root
// filesystem (no Docker engine), run by containerd as the Dockerfile's user with a
// read-only root filesystem and the RuntimeDefault seccomp profile, and reached through
// a Service's ClusterIP. A file the relay needs that the image lacks fails this test.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import { loadProductImage } from './product-images.ts';

const skip = skipUnlessNodeBuilt();
const RELAY_IMAGE = 'sluice.test/relay:dev';

/** The first reply line a client reads from host:port. */
function greeting(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no greeting from ${host}:${port}`)));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n');
      if (end >= 0) {
        socket.end('QUIT\r\n');
        resolve(data.slice(0, end));
      }
    });
    socket.on('error', reject);
  });
}

function manifest(): string {
  const config = {
    hostname: 'relay.node.test',
    listeners: [{ name: 'submission', address: '0.0.0.0', port: 2525, tls: 'starttls' }],
    spoolDir: '/var/spool/sluice/queue',
    stateDir: '/var/spool/sluice/state',
    usersFile: '/etc/sluice/config/users.json',
    admin: { address: '0.0.0.0', port: 9587 },
    dnsbl: { enabled: false },
  };
  const labels = { app: 'relay' };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'relay', namespace: 'mail' },
        data: { 'config.yaml': JSON.stringify(config), 'users.json': JSON.stringify({ users: [] }) },
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'relay', namespace: 'mail', labels },
        spec: {
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'relay',
              image: RELAY_IMAGE,
              imagePullPolicy: 'Never',
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              readinessProbe: { httpGet: { path: '/readyz', port: 9587 }, periodSeconds: 1 },
              volumeMounts: [
                { name: 'config', mountPath: '/etc/sluice/config', readOnly: true },
                { name: 'spool', mountPath: '/var/spool/sluice' },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [
            { name: 'config', configMap: { name: 'relay' } },
            { name: 'spool', emptyDir: {} },
            { name: 'tmp', emptyDir: {} },
          ],
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'relay-smtp', namespace: 'mail' },
        spec: { selector: labels, ports: [{ name: 'submission', port: 587, targetPort: 2525 }] },
      },
    ],
  });
}

describe('the relay image on the real node', { skip }, () => {
  let cluster: NodeCluster;
  before(async () => {
    cluster = await startNodeCluster();
  });
  after(() => cluster?.stop());

  test('relay/Dockerfile built on Debian packages runs as a pod and answers 220 through its Service', async () => {
    const image = await loadProductImage(cluster, 'relay', RELAY_IMAGE);
    assert.deepEqual(image.user, { uid: 10001, gid: 10001 });
    await cluster.cp.kubectl(['create', 'namespace', 'mail']);
    await cluster.cp.kubectl(['apply', '-f', '-'], { input: manifest() });
    try {
      await cluster.cp.kubectl(['wait', '-n', 'mail', '--for=condition=Ready', 'pod/relay', '--timeout=50s']);
    } catch (err: unknown) {
      const logs = await cluster.cp
        .kubectl(['logs', '-n', 'mail', 'relay'])
        .catch((e: unknown) => ({ stdout: String(e) }));
      const events = await cluster.cp.kubectl(['get', 'events', '-n', 'mail']);
      throw new Error(`relay pod not Ready: ${(err as Error).message}\n${logs.stdout}\n${events.stdout}`);
    }
    const { stdout: uid } = await cluster.cp.kubectl([
      'get',
      'pod',
      'relay',
      '-n',
      'mail',
      '-o',
      'jsonpath={.status.containerStatuses[0].user.linux.uid}',
    ]);
    assert.equal(uid, '10001', 'the container runs as the Dockerfile USER');
    const { stdout: clusterIp } = await cluster.cp.kubectl([
      'get',
      'service',
      'relay-smtp',
      '-n',
      'mail',
      '-o',
      'jsonpath={.spec.clusterIP}',
    ]);
    // a Ready pod is in the Service once kube-proxy has written its rules, a moment later
    // (refused until then, as on any cluster)
    const deadline = Date.now() + 30_000;
    let banner = '';
    for (;;) {
      try {
        banner = await greeting(clusterIp, 587);
        break;
      } catch (err: unknown) {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    assert.match(banner, /^220 relay\.node\.test ESMTP/);
  });
});
