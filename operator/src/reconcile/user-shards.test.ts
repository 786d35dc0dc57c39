// The users shards of a policy on a real kube-apiserver: a change of one user renders and
// writes that user's shard only (at 100,000 users, rendering every shard on every change
// costs seconds), and a shard edited by hand is still put back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hashPassword } from '@sluice/relay/password';
import { relayPolicy, smtpUser } from '../api/defaults.ts';
import type { RelayPolicy, SmtpUser } from '../api/types.ts';
import { SHARD_USERS_KEY } from '../build/user-shards.ts';
import type { KubeClient } from '../kube/client.ts';
import { keyOf, SECRETS } from '../kube/resources.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../testing/api-server.ts';
import { HashPool } from './hash-pool.ts';
import { type Lookup, type SecretObject, secretValue } from './policy-inputs.ts';
import { compactShardSecret, UserShards } from './user-shards.ts';

const skip = apiServerSkip();
const NS = 'default';
const USERS = 2500;

describe('users shards', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let policy: RelayPolicy;
  let hashA: string;
  let hashB: string;
  /** the Secrets as the API server has them */
  const owned = new Map<string, SecretObject>();
  /** what the operator's owned-Secrets cache holds: shards without their data */
  const cached = new Map<string, SecretObject>();
  const ownedLookup: Lookup<SecretObject> = {
    get: (namespace, name) => cached.get(keyOf(namespace, name)),
    list: () => [...cached.values()],
  };
  /** What an informer of the owned Secrets would hold now. */
  const refresh = async () => {
    owned.clear();
    cached.clear();
    const { items } = await admin.list<SecretObject>(SECRETS, { namespace: NS });
    for (const s of items) {
      owned.set(keyOf(s.metadata.namespace, s.metadata.name), s);
      cached.set(keyOf(s.metadata.namespace, s.metadata.name), compactShardSecret(s));
    }
  };
  const usersFile = (shard: SecretObject | undefined) =>
    JSON.parse(secretValue(shard, SHARD_USERS_KEY) ?? '{}') as {
      users: Array<{ username: string; passwordHash: string }>;
    };

  before(async () => {
    ({ cp, admin } = await startApiServer());
    policy = await admin.apply<RelayPolicy>(
      relayPolicy({ name: 'isp', namespace: NS }, { hostname: 'smtp.example.net' }) as never,
    );
    [hashA, hashB] = await Promise.all([hashPassword('first password'), hashPassword('second password')]);
  });
  after(async () => {
    await cp?.stop();
  });

  it('renders and writes only the changed user’s shard, and puts back a hand-edited one', async () => {
    const shards = new UserShards({
      client: admin,
      owned: ownedLookup,
      pool: new HashPool({ onReady: () => {} }),
    });
    const users: SmtpUser[] = Array.from({ length: USERS }, (_, i) =>
      smtpUser(
        { name: `u${i}`, namespace: NS, creationTimestamp: '2026-12-05T00:00:00Z' },
        {
          username: `user${i}@example.net`,
          policyRef: { name: 'isp' },
          passwordSecretRef: { name: `pw${i}` },
        },
      ),
    );
    const passwords = new Map<string, string>(users.map((u) => [u.metadata.name, hashA]));
    const inputs = () => users.map((user) => ({ user, password: passwords.get(user.metadata.name) }));
    // the internal user's password given as a hash: nothing waits for the hash pool
    const reconcile = async () => {
      await refresh();
      return shards.reconcile(policy, inputs(), hashA, 'fingerprint-key');
    };

    const first = await reconcile();
    assert.equal(first.set.count, 4);
    assert.equal(first.changed, 4);
    assert.equal(shards.renders, 4);

    const again = await reconcile();
    assert.equal(again.changed, 0);
    assert.equal(shards.renders, 4, 'nothing changed: no shard rendered');

    passwords.set('u7', hashB);
    const changed = await reconcile();
    assert.equal(changed.changed, 1);
    assert.equal(shards.renders, 5, 'one user changed: one shard rendered');
    await refresh();
    const holder = first.set.names
      .map((name) => usersFile(owned.get(keyOf(NS, name))))
      .flatMap((f) => f.users)
      .find((u) => u.username === 'user7@example.net');
    assert.equal(holder?.passwordHash, hashB);

    // a hand edit of another shard's users file is put back
    const victim = first.set.names.find((name) =>
      usersFile(owned.get(keyOf(NS, name))).users.every((u) => u.username !== 'user7@example.net'),
    );
    assert.ok(victim);
    const before = secretValue(owned.get(keyOf(NS, victim)), SHARD_USERS_KEY);
    await admin.mergePatch(owned.get(keyOf(NS, victim)) as SecretObject, {
      data: { [SHARD_USERS_KEY]: Buffer.from('{"users":[]}').toString('base64') },
    });
    const repaired = await reconcile();
    assert.equal(repaired.changed, 1);
    assert.equal(shards.renders, 6);
    await refresh();
    assert.equal(secretValue(owned.get(keyOf(NS, victim)), SHARD_USERS_KEY), before);
    assert.equal(cached.get(keyOf(NS, victim))?.data, undefined, 'the cache holds no shard data');
  });
});
