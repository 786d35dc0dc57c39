// The node tier's own check: a real kubelet, scheduler and controller manager run a Pod
// from an image built here, and its output comes back through `kubectl logs`.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@sluice/relay/testing';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import { mountsUnder } from './host.ts';

const skip = skipUnlessNodeBuilt();

describe('a real single-node cluster', { skip }, () => {
  let cluster: NodeCluster;
  before(async () => {
    cluster = await startNodeCluster();
    console.log(`node cluster up: ${JSON.stringify(cluster.timings)}`);
  });
  after(async () => {
    const dir = cluster?.dir;
    await cluster?.stop();
    if (dir) {
      assert.deepEqual(await mountsUnder(dir), [], 'mounts left under the run directory');
      assert.equal(existsSync(dir), false);
    }
  });

  test('a Deployment from a locally built image reaches Running and its output is read with kubectl logs', async () => {
    await cluster.loadImage({
      ref: 'sluice.test/coredns:1.15.0',
      layers: [{ source: cluster.bins.coredns, target: '/coredns' }],
      entrypoint: ['/coredns'],
    });
    await cluster.cp.kubectl(['create', 'namespace', 'smoke']);
    await cluster.cp.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'dns', namespace: 'smoke' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'dns' } },
          template: {
            metadata: { labels: { app: 'dns' } },
            spec: {
              containers: [
                {
                  name: 'coredns',
                  image: 'sluice.test/coredns:1.15.0',
                  imagePullPolicy: 'Never',
                  args: ['-dns.port=1053', '-conf=/dev/null'],
                  securityContext: { runAsUser: 65534, allowPrivilegeEscalation: false },
                },
              ],
              securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
            },
          },
        },
      }),
    });
    await cluster.cp.kubectl([
      'wait',
      '-n',
      'smoke',
      '--for=condition=Available',
      'deployment/dns',
      '--timeout=120s',
    ]);
    const { stdout: phase } = await cluster.cp.kubectl([
      'get',
      'pods',
      '-n',
      'smoke',
      '-l',
      'app=dns',
      '-o',
      'jsonpath={.items[*].status.phase}',
    ]);
    assert.equal(phase, 'Running');
    // Ready is not "has printed its banner": wait for the line, then read it as a user does.
    let logs = '';
    await waitFor(
      'CoreDNS banner in kubectl logs',
      async () => {
        logs = (await cluster.cp.kubectl(['logs', '-n', 'smoke', 'deployment/dns'])).stdout;
        return logs.includes('CoreDNS-');
      },
      { timeoutMs: 30_000 },
    );
    assert.match(logs, /^CoreDNS-1\.15\.0$/m);
  });
});
