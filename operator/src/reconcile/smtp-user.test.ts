import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { smtpUser } from '../api/defaults.ts';
import { policyNotFound, smtpUserStatus } from './smtp-user.ts';

const user = smtpUser(
  { name: 'alice', namespace: 'prod', generation: 3 },
  { username: 'alice', policyRef: { name: 'mail' }, passwordSecretRef: { name: 'alice-pw' } },
);

describe('SmtpUser status', () => {
  it('is Ready with the outcome of the users file and the observed generation', () => {
    const s = smtpUserStatus(
      user,
      { ok: true, reason: 'Active', message: 'The user can relay mail' },
      undefined,
      'T0',
    );
    assert.equal(s.observedGeneration, 3);
    assert.deepEqual(s.conditions, [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Active',
        message: 'The user can relay mail',
        observedGeneration: 3,
        lastTransitionTime: 'T0',
      },
    ]);
  });

  it('names the missing policy and its namespace', () => {
    const s = smtpUserStatus(user, policyNotFound('mail', 'prod'), undefined, 'T0');
    const [ready] = s.conditions;
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.reason, 'PolicyNotFound');
    assert.match(ready?.message ?? '', /^RelayPolicy mail not found in namespace prod/);
  });

  it('keeps the transition time while the status holds', () => {
    const first = smtpUserStatus(user, policyNotFound('mail', 'prod'), undefined, 'T0');
    const next = smtpUserStatus(
      user,
      { ok: false, reason: 'SecretNotFound', message: 'Secret alice-pw …' },
      first.conditions,
      'T1',
    );
    assert.equal(next.conditions[0]?.lastTransitionTime, 'T0');
    assert.equal(next.conditions[0]?.reason, 'SecretNotFound');
  });
});
