// Scenario 6 of issue 6: `kubectl scale relaypolicy --replicas=1` removes a replica that
// still holds queued mail (its destination MX is down). The replica drains: it keeps
// delivering for drain.deadlineSeconds, then hands its queue to the remaining replica
// over SMTP; once the MX is back every message arrives exactly once. No kubelet runs
// here: kubelet-shim.ts stops the highest ordinal with SIGTERM as kubelet would, and
// maps the relay Service name in drain.handoff.host to the remaining pod's IP.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { kubectlTables, row } from './kubectl-table.ts';
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

const erin: TestUser = { name: 'erin', username: 'erin', password: 'erin-e2e-Pa55word' };
/** Its MX host first resolves to 127.0.3.1, where nothing listens: the MX is down. */
const LATER = 'later.example';
const QUEUED = /^250 2\.0\.0 Ok: queued as (\S+)/;

/** Queue ids in a spool directory (queue/<id>.msg is the message; its rename the commit point). */
async function queued(spoolDir: string): Promise<string[]> {
  const files = await readdir(join(spoolDir, 'queue')).catch(() => []);
  return files.filter((f) => f.endsWith('.msg')).map((f) => f.slice(0, -'.msg'.length));
}

describe('scaling in drains the removed replica', { timeout: 400_000 }, () => {
  let c: SluiceCluster;
  const tag = randomBytes(4).toString('hex');

  before(async () => {
    if (skip) return;
    c = await startSluiceCluster({ users: [erin] });
    c.dns.setMx(LATER, [{ exchange: `mx.${LATER}`, priority: 10 }]);
    c.dns.setA(`mx.${LATER}`, ['127.0.3.1'], 1);
    await c.waitReady(2);
  });
  after(async () => {
    await c?.stop();
  });

  it('hands the queue of replica 1 to replica 0 on scale 2 → 1; nothing is lost or doubled', {
    skip,
  }, async () => {
    const subjects = [0, 1, 2].map((i) => `queued ${i} ${tag}`);
    const ids: string[] = [];
    for (const [i, subject] of subjects.entries()) {
      const info = await mailer(c.submission(1), erin.username, erin.password).sendMail({
        from: 'erin@shop.example',
        to: `user${i}@${LATER}`,
        subject,
        text: `message ${i}`,
      });
      const id = QUEUED.exec(info.response)?.[1];
      assert.ok(id, info.response);
      ids.push(id);
    }
    const pod1 = c.pods()[1] as PodView;
    await waitFor(
      'a deferred delivery attempt for each message on replica 1',
      () =>
        ids.every((id) =>
          pod1.logs.some(
            (l) =>
              l.event === 'delivery_attempt' &&
              l.queueId === id &&
              Number((l.results as { deferred?: number } | undefined)?.deferred) > 0,
          ),
        ),
      { timeoutMs: 30_000 },
    );
    const spool1 = c.shim.claimDir('spool', STATEFUL_SET, 1);
    assert.deepEqual((await queued(spool1)).sort(), [...ids].sort(), 'queued on replica 1');

    await c.kubectl(['scale', 'relaypolicy', POLICY, '-n', NAMESPACE, '--replicas=1']);
    await waitFor('replica 1 to be gone', () => c.shim.pods(STATEFUL_SET).length === 1, {
      timeoutMs: 60_000,
    });
    assert.deepEqual(
      pod1
        .events('handed_off')
        .map((l) => l.queueId)
        .sort(),
      [...ids].sort(),
      'replica 1 handed every message on',
    );
    assert.equal(pod1.events('stopped').length, 1, 'replica 1 stopped cleanly');
    assert.deepEqual(await queued(spool1), [], 'nothing left in the spool of replica 1');
    const atSink = () => c.sink.messages.filter((m) => m.recipients.some((r) => r.endsWith(`@${LATER}`)));
    assert.equal(atSink().length, 0, 'the MX is still down');

    // the MX comes back: replica 0 delivers what it was handed, once
    c.dns.setA(`mx.${LATER}`, ['127.0.0.1'], 1);
    await waitFor('all three messages at the sink', () => atSink().length >= 3, { timeoutMs: 30_000 });
    const spool0 = c.shim.claimDir('spool', STATEFUL_SET, 0);
    await waitFor('the queue of replica 0 to be empty', async () => (await queued(spool0)).length === 0, {
      timeoutMs: 30_000,
    });
    for (const [i, subject] of subjects.entries()) {
      const copies = atSink().filter((m) => m.raw.toString('utf8').includes(`\r\nSubject: ${subject}\r\n`));
      assert.equal(copies.length, 1, `message ${i} delivered exactly once`);
      assert.deepEqual(copies[0]?.recipients, [`user${i}@${LATER}`]);
    }

    const policy = await c.waitReady(1);
    assert.equal(policy.status?.replicas, 1);
    const { stdout } = await c.kubectl(['get', 'relaypolicy', POLICY, '-n', NAMESPACE]);
    assert.deepEqual(row(kubectlTables(stdout)[0], POLICY, ['REPLICAS', 'READY-PODS', 'READY']), {
      REPLICAS: '1',
      'READY-PODS': '1',
      READY: 'True',
    });
  });
});
