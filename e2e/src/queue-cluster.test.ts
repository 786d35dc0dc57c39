// The queue command across every relay pod of a policy (`kubectl sluice queue ...`), run
// as an admin runs it: the plugin as its own process with the admin's kubeconfig, finding
// the pods and the admin token through the API server. No kubelet runs here: the shim
// runs the relay pods as processes and writes their Pod objects (podObjects). Their pod
// IPs are loopback addresses, which kube-apiserver refuses to proxy to, so the command
// runs with --direct (the pod IPs the Pods report); the pod proxy is the default where
// pods have real IPs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { PodView } from './kubelet-shim.ts';
import {
  NAMESPACE,
  POLICY,
  type SluiceCluster,
  STATEFUL_SET,
  startSluiceCluster,
  type TestUser,
} from './sluice-cluster.ts';
import { mailer } from './smtp-clients.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

const PLUGIN = fileURLToPath(import.meta.resolve('@sluice/operator/kubectl-sluice'));
const erin: TestUser = { name: 'erin', username: 'erin', password: 'erin-e2e-Pa55word' };
/** Its MX host first resolves to 127.0.3.1, where nothing listens: the MX is down. */
const LATER = 'later.example';
const QUEUED = /^250 2\.0\.0 Ok: queued as (\S+)/;
const POD0 = `${STATEFUL_SET}-0`;
const POD1 = `${STATEFUL_SET}-1`;

describe('kubectl sluice queue across the pods of a policy', { timeout: 400_000 }, () => {
  let c: SluiceCluster;
  const tag = randomBytes(4).toString('hex');

  before(async () => {
    if (skip) return;
    c = await startSluiceCluster({ users: [erin], podObjects: true });
    c.dns.setMx(LATER, [{ exchange: `mx.${LATER}`, priority: 10 }]);
    c.dns.setA(`mx.${LATER}`, ['127.0.3.1'], 1);
    await c.waitReady(2);
  });
  after(async () => {
    await c?.stop();
  });

  async function plugin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const full = ['queue', ...args, '--policy', POLICY, '-n', NAMESPACE, '--direct'];
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [PLUGIN, ...full], {
        env: { ...process.env, KUBECONFIG: c.cp.kubeconfigPath },
      });
      return { code: 0, stdout, stderr };
    } catch (err: unknown) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('lists both pods’ queues merged, holds and releases on both, and sums the counts', {
    skip,
  }, async () => {
    const ids: string[] = [];
    for (const ordinal of [0, 1]) {
      const info = await mailer(c.submission(ordinal), erin.username, erin.password).sendMail({
        from: 'erin@shop.example',
        to: `user${ordinal}@${LATER}`,
        subject: `fan-out ${ordinal} ${tag}`,
        text: `message ${ordinal}`,
      });
      const id = QUEUED.exec(info.response)?.[1];
      assert.ok(id, info.response);
      ids.push(id);
    }
    const [id0, id1] = ids as [string, string];
    const pods = c.pods() as [PodView, PodView];
    await waitFor(
      'a deferred attempt on each pod',
      () =>
        [0, 1].every((i) =>
          pods[i]?.logs.some(
            (l) =>
              l.event === 'delivery_attempt' &&
              l.queueId === ids[i] &&
              Number((l.results as { deferred?: number } | undefined)?.deferred) > 0,
          ),
        ),
      { timeoutMs: 30_000 },
    );

    const listed = await plugin(['list']);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.split('\n');
    assert.match(lines[0] ?? '', /^-Pod-+ -Queue ID-+ --Size-- ----Arrival Time---- -Sender\/Recipient-+$/);
    // the id is followed by `*` while its attempt is still being written down (the attempt
    // line comes before the retry is persisted), as mailq marks an active message
    const row = (pod: string, id: string) =>
      lines.find((l) => l.startsWith(`${pod} `) && new RegExp(` ${id}\\*? `).test(l));
    assert.ok(row(POD0, id0), listed.stdout);
    assert.ok(row(POD1, id1), listed.stdout);
    assert.match(listed.stdout, /^-- \d+ Kbytes in 2 requests\.$/m);

    const held = await plugin(['hold', '--domain', LATER]);
    assert.deepEqual(held, {
      code: 0,
      stdout: `Held 2 messages (${POD0}: 1, ${POD1}: 1).\n`,
      stderr: '',
    });
    const json = await plugin(['list', '--state', 'held', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const body = JSON.parse(json.stdout) as {
      messages: Array<{ queueId: string; pod: string; state: string }>;
    };
    assert.deepEqual(
      body.messages.map((m) => [m.pod, m.queueId, m.state]).sort(),
      [
        [POD0, id0, 'held'],
        [POD1, id1, 'held'],
      ].sort(),
    );
    const shown = await plugin(['show', id1]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^Pod: +${POD1}\\nQueue ID: +${id1}\\nState: +held`));

    // the MX comes back; released, both arrive
    c.dns.setA(`mx.${LATER}`, ['127.0.0.1'], 1);
    const released = await plugin(['release', '--all']);
    assert.deepEqual(released, {
      code: 0,
      stdout: `Released 2 messages (${POD0}: 1, ${POD1}: 1).\n`,
      stderr: '',
    });
    const atSink = () =>
      c.sink.messages.filter(
        (m) => m.raw.toString('utf8').includes(`fan-out`) && m.raw.toString('utf8').includes(tag),
      );
    await waitFor('both messages at the sink', () => atSink().length === 2, { timeoutMs: 30_000 });
    await waitFor(
      'both queues empty',
      async () => (await plugin(['list'])).stdout === 'Mail queue is empty\n',
      { timeoutMs: 30_000 },
    );
  });

  it('says which policy it cannot find', { skip }, async () => {
    const { code, stderr } = await promisify(execFile)(
      process.execPath,
      [PLUGIN, 'queue', 'list', '--policy', 'nope', '-n', NAMESPACE, '--direct'],
      { env: { ...process.env, KUBECONFIG: c.cp.kubeconfigPath } },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(code, 1);
    assert.equal(stderr, `kubectl sluice: relaypolicy "nope" not found in namespace "${NAMESPACE}"\n`);
  });
});
