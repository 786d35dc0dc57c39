// More users than one Secret can hold (issue 17): 8,000 SmtpUsers with allowed senders
// are about 2.6 MB of users file, past the API server's 1 MiB per Secret. The operator
// spreads them over shard Secrets, the relay pod mounts them as one directory, and a
// user whose record sits in a shard other than the first authenticates.
// The bulk users share one password Secret holding a hash (so the operator hashes
// nothing for them); the probe user has a plain password, hashed by the operator.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KubeObject } from '@sluice/operator/kube-client';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import { hashPassword } from '@sluice/relay/password';
import { waitFor } from '@sluice/relay/testing/wait-for';
import {
  NAMESPACE,
  POLICY,
  type SluiceCluster,
  STATEFUL_SET,
  startSluiceCluster,
  type TestUser,
} from './sluice-cluster.ts';
import { authReply } from './smtp-clients.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

const BULK = 8000;
const CONCURRENCY = 16;
const MiB = 1024 * 1024;
const probe: TestUser = { name: 'probe', username: 'probe@shop.example', password: 'probe-e2e-Pa55word' };

interface ShardSecret {
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

describe('a policy with more users than one Secret holds', { timeout: 600_000 }, () => {
  let c: SluiceCluster;

  before(async () => {
    if (skip) return;
    c = await startSluiceCluster({ users: [probe], spec: { replicas: 1 } });
    await c.admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'bulk-password', namespace: NAMESPACE },
      stringData: { password: await hashPassword('bulk-e2e-Pa55word') },
    } as KubeObject);
    const create = (i: number) =>
      c.admin.create({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'SmtpUser',
        metadata: { name: `bulk-${i}`, namespace: NAMESPACE },
        spec: {
          username: `customer-${i}@bulk.example`,
          policyRef: { name: POLICY },
          passwordSecretRef: { name: 'bulk-password', key: 'password' },
          allowedSenders: [
            `@customer-${i}-first-domain.example`,
            `@customer-${i}-second-domain.example`,
            `billing-and-invoices@customer-${i}-third-domain.example`,
          ],
        },
      } as KubeObject);
    for (let i = 0; i < BULK; i += CONCURRENCY) {
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, BULK - i) }, (_, j) => create(i + j)));
    }
  });
  after(async () => {
    await c?.stop();
  });

  it('spreads the users over shard Secrets under 1 MiB each, goes Ready, and authenticates a user of a later shard', {
    skip,
  }, async () => {
    await c.waitForPolicy('all users counted', (p) => p.status?.userCount === BULK + 1, {
      timeoutMs: 300_000,
    });
    const shards = await waitFor(
      'every user in the shards the StatefulSet mounts',
      async () => {
        const sts = (await c.admin.get('apps/v1', 'StatefulSet', NAMESPACE, STATEFUL_SET)) as unknown as {
          spec: {
            template: {
              spec: {
                volumes: Array<{
                  name: string;
                  projected?: { sources: Array<{ secret: { name: string } }> };
                }>;
              };
            };
          };
        };
        const mounted =
          sts.spec.template.spec.volumes.find((v) => v.name === 'users')?.projected?.sources ?? [];
        const secrets: ShardSecret[] = [];
        for (const s of mounted) {
          const secret = await c.admin.get<ShardSecret & { apiVersion?: string }>(
            'v1',
            'Secret',
            NAMESPACE,
            s.secret.name,
          );
          if (!secret) return undefined;
          secrets.push(secret);
        }
        const users = secrets.flatMap(
          (s) =>
            (
              JSON.parse(Buffer.from(s.data?.['users.json'] ?? '', 'base64').toString()) as {
                users: Array<{ username: string }>;
              }
            ).users,
        );
        // the bulk users, the probe and the operator's internal hand-off user
        return users.length === BULK + 2 ? secrets : undefined;
      },
      { timeoutMs: 300_000 },
    );
    const sizes = shards.map((s) => Buffer.from(s.data?.['users.json'] ?? '', 'base64').length);
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(total > 2 * MiB, `all users together are ${total} bytes, more than one Secret holds`);
    assert.ok(Math.max(...sizes) < MiB / 2, `the largest shard is ${Math.max(...sizes)} bytes`);
    const probeShard = shards.findIndex((s) =>
      Buffer.from(s.data?.['users.json'] ?? '', 'base64')
        .toString()
        .includes(`"${probe.username}"`),
    );
    assert.ok(probeShard > 0, `the probe user is in shard ${probeShard} of ${shards.length}, not the first`);

    await c.waitReady(1, 300_000);
    const reply = await authReply(c.submission(0), probe.username, probe.password);
    assert.equal(reply.code, 235, reply.text);
    const bulk = await authReply(c.submission(0), 'customer-7999@bulk.example', 'bulk-e2e-Pa55word');
    assert.equal(bulk.code, 235, bulk.text);
  });
});
