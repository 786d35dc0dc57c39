// Scenario 1 on the real node: `helm install` of the chart runs the operator in-cluster
// from its image under the chart's ServiceAccount (the API server enforces
// OwnerReferencesPermissionEnforcement and NodeRestriction); a RelayPolicy with two
// replicas runs two relay pods from the relay image, on local spool volumes, and the
// policy and its SmtpUsers become Ready.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import { installSluice, RELAY_IMAGE, RELEASE, RELEASE_NAMESPACE } from './sluice-on-node.ts';

const skip = skipUnlessNodeBuilt();
const NAMESPACE = 'mail';

const USERS = [
  { name: 'alice', username: 'alice@example.com', password: 'alice-password-1' },
  { name: 'bob', username: 'bob@example.com', password: 'bob-password-1' },
];

function resources(): string {
  const items: object[] = [];
  for (const user of USERS) {
    items.push(
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: `${user.name}-password`, namespace: NAMESPACE },
        stringData: { password: user.password },
      },
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'SmtpUser',
        metadata: { name: user.name, namespace: NAMESPACE },
        spec: {
          username: user.username,
          policyRef: { name: 'relay' },
          passwordSecretRef: { name: `${user.name}-password`, key: 'password' },
        },
      },
    );
  }
  items.push({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata: { name: 'relay', namespace: NAMESPACE },
    spec: {
      replicas: 2,
      image: RELAY_IMAGE,
      imagePullPolicy: 'Never',
      hostname: 'relay.node.test',
      listeners: [{ name: 'submission', port: 587, tls: 'starttls' }],
      service: { type: 'ClusterIP' },
      drainDeadlineSeconds: 2,
    },
  });
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

describe('scenario 1 on the real node: helm install, the operator in-cluster, a policy Ready', {
  skip,
}, () => {
  let cluster: NodeCluster;
  before(async () => {
    cluster = await startNodeCluster();
    await installSluice(cluster);
  });
  after(() => cluster?.stop());

  test('the operator runs from its image as the chart ServiceAccount; two relay pods make the policy Ready', async () => {
    const { stdout: operatorPod } = await cluster.cp.kubectl([
      'get',
      'pods',
      '-n',
      RELEASE_NAMESPACE,
      '-o',
      'jsonpath={range .items[*]}{.spec.serviceAccountName} {.spec.containers[0].image} {.status.phase}{"\\n"}{end}',
    ]);
    assert.match(operatorPod, new RegExp(`^${RELEASE}-operator sluice\\.test/operator:dev Running$`, 'm'));

    await cluster.cp.kubectl(['create', 'namespace', NAMESPACE]);
    await cluster.cp.kubectl(['apply', '-f', '-'], { input: resources() });
    const ready = async () => {
      const { stdout } = await cluster.cp.kubectl([
        'get',
        'relaypolicy',
        'relay',
        '-n',
        NAMESPACE,
        '-o',
        'json',
      ]);
      return JSON.parse(stdout) as {
        status?: { readyReplicas?: number; userCount?: number; conditions?: Condition[] };
      };
    };
    const deadline = Date.now() + 180_000;
    let policy = await ready();
    while (!policy.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
      if (Date.now() > deadline) {
        const pods = await cluster.cp.kubectl(['get', 'pods,pvc', '-n', NAMESPACE, '-o', 'wide']);
        const events = await cluster.cp.kubectl(['get', 'events', '-n', NAMESPACE]);
        const logs = await cluster.cp
          .kubectl(['logs', '-n', RELEASE_NAMESPACE, `deployment/${RELEASE}-operator`, '--tail=30'])
          .catch((e: unknown) => ({ stdout: String(e) }));
        assert.fail(
          `policy not Ready: ${JSON.stringify(policy.status)}\n${pods.stdout}\n${events.stdout}\n${logs.stdout}`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
      policy = await ready();
    }
    const readyCondition = policy.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(readyCondition?.reason, 'PodsReady');
    assert.match(readyCondition?.message ?? '', /2 of 2 relay pods ready/);
    assert.equal(policy.status?.readyReplicas, 2);
    assert.equal(policy.status?.userCount, 2);

    const { stdout: pods } = await cluster.cp.kubectl([
      'get',
      'pods',
      '-n',
      NAMESPACE,
      '-o',
      'jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{"\\n"}{end}',
    ]);
    assert.deepEqual(pods.trim().split('\n').sort(), [
      'relay-relay-0 sluice.test/relay:dev Running',
      'relay-relay-1 sluice.test/relay:dev Running',
    ]);
    const { stdout: claims } = await cluster.cp.kubectl([
      'get',
      'pvc',
      '-n',
      NAMESPACE,
      '-o',
      'jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}',
    ]);
    assert.deepEqual(claims.trim().split(' ').sort(), [
      'spool-relay-relay-0=Bound',
      'spool-relay-relay-1=Bound',
    ]);
    for (const user of USERS) {
      const { stdout } = await cluster.cp.kubectl([
        'get',
        'smtpuser',
        user.name,
        '-n',
        NAMESPACE,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      assert.equal(stdout, 'True', `SmtpUser ${user.name} Ready`);
    }
  });
});
