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
});
