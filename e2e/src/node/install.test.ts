// Scenario 1 on the real node: `helm install` of the chart runs the operator in-cluster
// from its image under the chart's ServiceAccount (the API server enforces
// OwnerReferencesPermissionEnforcement and NodeRestriction); a RelayPolicy with two
// replicas runs two relay pods from the relay image, on local spool volumes, and the
// policy and its SmtpUsers become Ready.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import {
  installSluice,
  NAMESPACE,
  RELEASE,
  RELEASE_NAMESPACE,
  relayResources,
  USERS,
  waitPolicyReady,
} from './sluice-on-node.ts';

const skip = skipUnlessNodeBuilt();

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
    await cluster.cp.kubectl(['apply', '-f', '-'], { input: relayResources() });
    const status = await waitPolicyReady(cluster);
    const readyCondition = status.conditions?.find((c) => c.type === 'Ready');
    assert.equal(readyCondition?.reason, 'PodsReady');
    assert.match(readyCondition?.message ?? '', /2 of 2 relay pods ready/);
    assert.equal(status.readyReplicas, 2);
    assert.equal(status.userCount, 2);

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
