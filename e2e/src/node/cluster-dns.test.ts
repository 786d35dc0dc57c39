// kube-proxy and cluster DNS on the real node: the kube-dns Service's ClusterIP (an
// nftables rule of kube-proxy's, not a pod IP) reaches the CoreDNS pod, which answers
// for Services from the API server and for a zone of its own.
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@sluice/relay/testing';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import { deployClusterDns } from './cluster-dns.ts';

const skip = skipUnlessNodeBuilt();

const ZONE = `$ORIGIN example.net.
@ 30 IN SOA ns.example.net. hostmaster.example.net. 1 60 60 600 30
@ 30 IN NS ns.example.net.
@ 30 IN MX 10 mx.example.net.
ns 30 IN A 192.0.2.53
mx 30 IN A 192.0.2.25
`;

describe('Services and names on the real node', { skip }, () => {
  let cluster: NodeCluster;
  let resolver: Resolver;
  before(async () => {
    cluster = await startNodeCluster();
    await deployClusterDns(cluster, { zones: { 'example.net': ZONE } });
    resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([cluster.dnsIp]);
  });
  after(() => cluster?.stop());

  test('the kube-dns ClusterIP reaches CoreDNS, which resolves a Service name to its ClusterIP', async () => {
    await cluster.cp.kubectl(['create', 'namespace', 'mail']);
    await cluster.cp.kubectl(['create', 'service', 'clusterip', 'smtp', '-n', 'mail', '--tcp=25:25']);
    const { stdout: clusterIp } = await cluster.cp.kubectl([
      'get',
      'service',
      'smtp',
      '-n',
      'mail',
      '-o',
      'jsonpath={.spec.clusterIP}',
    ]);
    assert.ok(clusterIp.startsWith(cluster.serviceSubnet.replace(/0\/24$/, '')), clusterIp);
    let answer: string[] = [];
    // CoreDNS learns of the new Service through its watch: a name can be briefly unknown.
    await waitFor(
      'smtp.mail.svc.cluster.local through the kube-dns ClusterIP',
      async () => {
        answer = await resolver.resolve4('smtp.mail.svc.cluster.local').catch(() => []);
        return answer.length > 0;
      },
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(answer, [clusterIp]);
    assert.deepEqual(await resolver.resolve4('kube-dns.kube-system.svc.cluster.local'), [cluster.dnsIp]);
  });

  test('a zone of its own: MX records a relay finds its destinations by', async () => {
    const mx = await resolver.resolveMx('example.net');
    assert.deepEqual(
      mx.map(({ exchange, priority }) => ({ exchange, priority })),
      [{ exchange: 'mx.example.net', priority: 10 }],
    );
    assert.deepEqual(await resolver.resolve4('mx.example.net'), ['192.0.2.25']);
  });
});
