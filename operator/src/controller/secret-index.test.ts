import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { relayPolicy, smtpUser } from '../api/defaults.ts';
import { secretsOfPolicy } from '../reconcile/policy-inputs.ts';
import { SecretIndex } from './secret-index.ts';

const policy = relayPolicy(
  { name: 'mail', namespace: 'prod' },
  {
    hostname: 'relay.example.net',
    tlsSecretName: 'relay-tls',
    redis: {
      mode: 'standalone',
      nodes: ['redis:6379'],
      commandTimeoutMs: 500,
      passwordSecretRef: { name: 'redis-auth', key: 'password' },
      tls: false,
      db: 0,
      onDown: 'local',
    },
  },
);
const user = (name: string, secret: string) =>
  smtpUser(
    { name, namespace: 'prod' },
    { username: name, policyRef: { name: 'mail' }, passwordSecretRef: { name: secret } },
  );

describe('secret → policy index', () => {
  it('collects the Secrets a policy reads directly and through its users', () => {
    assert.deepEqual(
      [...secretsOfPolicy(policy, [user('alice', 'alice-pw'), user('bob', 'shared-pw')])].sort(),
      ['prod/alice-pw', 'prod/redis-auth', 'prod/relay-tls', 'prod/shared-pw'],
    );
    assert.deepEqual(
      [...secretsOfPolicy(undefined, [user('alice', 'alice-pw')])],
      ['prod/alice-pw'],
      'users of a missing policy',
    );
  });

  it('finds every policy that reads a Secret, and forgets replaced references', () => {
    const index = new SecretIndex();
    index.set('prod/mail', ['prod/relay-tls', 'prod/alice-pw']);
    index.set('prod/bulk', ['prod/relay-tls']);
    assert.deepEqual(index.policiesFor('prod/relay-tls').sort(), ['prod/bulk', 'prod/mail']);
    assert.deepEqual(index.policiesFor('prod/alice-pw'), ['prod/mail']);
    index.set('prod/mail', ['prod/alice-pw']);
    assert.deepEqual(index.policiesFor('prod/relay-tls'), ['prod/bulk']);
    index.delete('prod/bulk');
    assert.deepEqual(index.policiesFor('prod/relay-tls'), []);
    assert.deepEqual(index.policiesFor('other/alice-pw'), [], 'namespaces are apart');
  });

  it('keeps a Secret that several owners name until the last lets go, and says when it is free', () => {
    const index = new SecretIndex();
    assert.deepEqual(index.setOwner('user:prod/alice', 'prod/mail', ['prod/shared-pw']), []);
    index.setOwner('user:prod/bob', 'prod/mail', ['prod/shared-pw']);
    index.setOwner('user:prod/carol', 'prod/bulk', ['prod/shared-pw']);
    assert.deepEqual(index.policiesFor('prod/shared-pw').sort(), ['prod/bulk', 'prod/mail']);
    assert.deepEqual(index.deleteOwner('user:prod/carol'), [], 'still named by two users of mail');
    assert.deepEqual(index.policiesFor('prod/shared-pw'), ['prod/mail']);
    assert.deepEqual(index.deleteOwner('user:prod/alice'), [], 'still named by bob');
    assert.deepEqual(index.secretsFor('prod/mail'), ['prod/shared-pw']);
    // bob moves to his own Secret: the shared one is free, and so is his after he goes
    assert.deepEqual(index.setOwner('user:prod/bob', 'prod/mail', ['prod/bob-pw']), ['prod/shared-pw']);
    assert.deepEqual(index.policiesFor('prod/shared-pw'), []);
    assert.deepEqual(index.secretsFor('prod/mail'), ['prod/bob-pw']);
    assert.deepEqual(index.deleteOwner('user:prod/bob'), ['prod/bob-pw']);
    assert.deepEqual(index.secretsFor('prod/mail'), []);
  });
});
