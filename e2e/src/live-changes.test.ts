// Scenario 4 of issue 6: what a platform team changes with kubectl reaches the running
// relays. Passwords, suspensions and limits are reloaded in place (the pods keep their
// PIDs); a listener port needs new sockets, so the operator changes the pod template and
// the pods roll. No kubelet runs here: kubelet-shim.ts plays it, rewriting mounted
// ConfigMaps and Secrets the way kubelet does (atomic `..data` swap).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { freePortOn } from '@sluice/relay/testing/ports';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { kubectlTables, row } from './kubectl-table.ts';
import {
  DOMAIN,
  NAMESPACE,
  POLICY,
  passwordSecret,
  type SluiceCluster,
  STATEFUL_SET,
  startSluiceCluster,
  type TestUser,
} from './sluice-cluster.ts';
import { authReply, connectRaw, type Endpoint, login } from './smtp-clients.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

const carol: TestUser = { name: 'carol', username: 'carol', password: 'carol-old-Pa55word' };
const dave: TestUser = { name: 'dave', username: 'dave', password: 'dave-e2e-Pa55word' };
const NEW_PASSWORD = 'carol-new-Pa55word';

describe('changes made with kubectl reach the running relays', { timeout: 400_000 }, () => {
  let c: SluiceCluster;
  let pids: Array<number | undefined>;

  before(async () => {
    if (skip) return;
    // waiting for a change is done by trying it: failed logins must not lock anyone out
    c = await startSluiceCluster({
      users: [carol, dave],
      spec: { authLockout: { maxFailuresPerUser: 1000, maxFailuresPerIp: 1000 } },
    });
    await c.waitReady(2);
    pids = c.pods().map((p) => p.pid);
  });
  after(async () => {
    await c?.stop();
  });

  const replicas = (): Endpoint[] => [c.submission(0), c.submission(1)];
  const patchPolicy = (spec: object) =>
    c.kubectl([
      'patch',
      'relaypolicy',
      POLICY,
      '-n',
      NAMESPACE,
      '--type',
      'merge',
      '-p',
      JSON.stringify({ spec }),
    ]);
  /** Both relay processes are new ones: neither pod runs a pid of `before`. */
  const podsReplaced = (before: Array<number | undefined>) =>
    waitFor(
      'both pods replaced',
      () => {
        const now = c.pods();
        return now.length === 2 && now.every((p, i) => p.pid !== undefined && p.pid !== before[i]);
      },
      { timeoutMs: 90_000 },
    );
  const samePods = () => {
    assert.deepEqual(
      c.pods().map((p) => p.pid),
      pids,
      'the relay processes were not restarted',
    );
    assert.deepEqual(
      c.pods().map((p) => p.restarts),
      [0, 0],
    );
  };

  it('takes a new password from the changed Secret, refuses the old one, without a restart', {
    skip,
  }, async () => {
    for (const pod of replicas())
      assert.equal((await authReply(pod, carol.username, carol.password)).code, 235);
    await c.apply(passwordSecret({ ...carol, password: NEW_PASSWORD }));
    for (const pod of replicas()) {
      await waitFor(
        `the new password accepted by ${pod.host}`,
        async () => {
          return (await authReply(pod, carol.username, NEW_PASSWORD)).code === 235;
        },
        { timeoutMs: 30_000 },
      );
      const old = await authReply(pod, carol.username, carol.password);
      assert.equal(old.code, 535);
      assert.equal(old.text, '5.7.8 Authentication credentials invalid');
    }
    samePods();
  });

  it('refuses a suspended user, without a restart', { skip }, async () => {
    for (const pod of replicas())
      assert.equal((await authReply(pod, dave.username, dave.password)).code, 235);
    await c.kubectl([
      'patch',
      'smtpuser',
      dave.name,
      '-n',
      NAMESPACE,
      '--type',
      'merge',
      '-p',
      '{"spec":{"suspended":true}}',
    ]);
    for (const pod of replicas()) {
      const reply = await waitFor(
        `dave refused by ${pod.host}`,
        async () => {
          const r = await authReply(pod, dave.username, dave.password);
          return r.code !== 235 && r;
        },
        { timeoutMs: 30_000 },
      );
      assert.equal(reply.code, 535);
      assert.equal(reply.text, '5.7.8 Authentication credentials invalid: account suspended');
    }
    const { stdout } = await c.kubectl(['get', 'smtpuser', dave.name, '-n', NAMESPACE]);
    assert.deepEqual(row(kubectlTables(stdout)[0], dave.name, ['SUSPENDED']), { SUSPENDED: 'true' });
    samePods();
  });

  it('applies a new recipient limit, without a restart', { skip }, async () => {
    await patchPolicy({ limits: { maxRecipients: 3 } });
    const to = ['a', 'b', 'c', 'd'].map((x) => `${x}@${DOMAIN}`);
    for (const pod of replicas()) {
      const fourth = await waitFor(
        `the limit of 3 on ${pod.host}`,
        async () => {
          const { client, auth } = await login(pod, carol.username, NEW_PASSWORD);
          assert.equal(auth.code, 235);
          assert.equal((await client.command(`MAIL FROM:<carol@shop.example>`)).code, 250);
          const replies = [];
          for (const rcpt of to) replies.push(await client.command(`RCPT TO:<${rcpt}>`));
          await client.quit();
          return replies[3]?.code === 452 && replies;
        },
        { timeoutMs: 30_000 },
      );
      assert.deepEqual(
        fourth.map((r) => r.code),
        [250, 250, 250, 452],
      );
      assert.match(fourth[3]?.text ?? '', /^4\.5\.3 Too many recipients, at most 3 per message/);
    }
    samePods();
    await c.waitReady(2);
  });

  it('rolls the pods for a new listener port, which then answers', { skip }, async () => {
    const oldPort = c.ports.submission;
    const newPort = await freePortOn([c.podIp(0), c.podIp(1)]);
    const listeners = [
      { name: 'submission', port: newPort, tls: 'starttls' },
      { name: 'smtps', port: c.ports.smtps, tls: 'implicit' },
    ];
    const patchedAt = Date.now();
    await patchPolicy({ listeners });
    await podsReplaced(pids);
    await c.waitReady(2);
    // one at a time, highest ordinal first: pod 0 went only once the new pod 1 was ready
    const steps = c.shim.history.filter((h) => h.at >= patchedAt).map((h) => `${h.action} ${h.pod}`);
    const killing1 = steps.indexOf(`Killing ${STATEFUL_SET}-1`);
    const ready1 = steps.indexOf(`Ready ${STATEFUL_SET}-1`, killing1);
    const killing0 = steps.indexOf(`Killing ${STATEFUL_SET}-0`);
    assert.ok(killing1 >= 0 && ready1 > killing1 && killing0 > ready1, steps.join(', '));
    for (const ordinal of [0, 1]) {
      const pod = { host: c.podIp(ordinal), port: newPort };
      const { client, auth } = await login(pod, carol.username, NEW_PASSWORD);
      assert.equal(auth.code, 235, `new port on ${pod.host}`);
      await client.quit();
      await assert.rejects(connectRaw({ host: c.podIp(ordinal), port: oldPort }), { code: 'ECONNREFUSED' });
    }
    const { stdout } = await c.kubectl(['get', 'statefulset', STATEFUL_SET, '-n', NAMESPACE, '-o', 'json']);
    const status = (JSON.parse(stdout) as { status: Record<string, unknown> }).status;
    assert.equal(status.currentRevision, status.updateRevision);
    assert.equal(status.updatedReplicas, 2);
  });

  it('rolls the pods for spec.workers: 2, whose two relay processes then take mail on the same port', {
    skip,
  }, async () => {
    const before = c.pods().map((p) => p.pid);
    await patchPolicy({ workers: 2 });
    await podsReplaced(before);
    await c.waitReady(2);
    const { stdout } = await c.kubectl(['get', 'relaypolicy', POLICY, '-n', NAMESPACE, '-o', 'json']);
    const policy = JSON.parse(stdout) as {
      spec: { listeners: Array<{ name: string; port: number }> };
      status: { conditions: Array<{ type: string; status: string; reason: string }> };
    };
    const port = policy.spec.listeners.find((l) => l.name === 'submission')?.port ?? 0;
    // Redis holds the shared state: not Degraded for several processes a pod
    assert.deepEqual(
      policy.status.conditions.filter((x) => x.type === 'Degraded').map((x) => [x.status, x.reason]),
      [['False', 'AsExpected']],
    );
    for (const ordinal of [0, 1]) {
      const metrics = await (await fetch(`http://${c.podIp(ordinal)}:9587/metrics`)).text();
      assert.match(metrics, /^sluice_workers 2$/m, `pod ${ordinal}`);
      assert.match(metrics, /^sluice_workers_ready 2$/m, `pod ${ordinal}`);
      const { client, auth } = await login({ host: c.podIp(ordinal), port }, carol.username, NEW_PASSWORD);
      assert.equal(auth.code, 235, `pod ${ordinal}`);
      await client.quit();
    }
  });
});
