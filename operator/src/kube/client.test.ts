// The client's requests against a real kube-apiserver: connections to it are reused, not
// opened (with a TLS handshake and the client certificate) once per request.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { startApiServer } from '../testing/api-server.ts';
import { type ControlPlane, skipUnlessBuilt } from '../testing/control-plane.ts';
import type { KubeClient, KubeObject } from './client.ts';

const skip = skipUnlessBuilt(['kube-apiserver', 'etcd']);

describe('the Kubernetes client', { skip, timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  before(async () => {
    ({ cp, admin } = await startApiServer());
  });
  after(async () => {
    await cp?.stop();
  });

  it('sends one request after another over the same connection to the API server', async () => {
    const port = Number(new URL(cp.server).port);
    let opened = 0;
    const onSocket = ({
      socket,
    }: {
      socket: { remotePort?: number; once(e: string, f: () => void): void };
    }) => {
      // counted once connected: the remote port is known then
      socket.once('connect', () => {
        if (socket.remotePort === port) opened++;
      });
    };
    diagnostics.subscribe('net.client.socket', onSocket as never);
    try {
      for (let i = 0; i < 20; i++) {
        await admin.create({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: `reuse-${i}`, namespace: 'default' },
          data: { i: String(i) },
        } as KubeObject);
        assert.ok(await admin.get('v1', 'ConfigMap', 'default', `reuse-${i}`));
      }
    } finally {
      diagnostics.unsubscribe('net.client.socket', onSocket as never);
    }
    assert.ok(opened <= 2, `${opened} connections opened for 40 requests`);
  });
});
