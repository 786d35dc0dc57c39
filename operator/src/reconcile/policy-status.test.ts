import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findCondition } from './conditions.ts';
import { type PolicyFacts, policyStatus } from './policy-status.ts';

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:05:00.000Z';

function facts(over: Partial<PolicyFacts> = {}): PolicyFacts {
  return {
    generation: 4,
    desiredReplicas: 2,
    multiplePods: true,
    sharedState: true,
    statefulSet: { generation: 1, observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2 },
    missingSecrets: [],
    rejectedUsers: [],
    userCount: 3,
    selector: 'app.kubernetes.io/name=sluice-relay,app.kubernetes.io/instance=mail',
    ...over,
  };
}

function condition(f: PolicyFacts, type: 'Ready' | 'Progressing' | 'Degraded') {
  const c = findCondition(policyStatus(f, undefined, T0).conditions, type);
  assert.ok(c, `${type} condition present`);
  return c;
}

describe('RelayPolicy status', () => {
  it('is Ready when every wanted pod is ready, with the counts and selector', () => {
    const s = policyStatus(facts(), undefined, T0);
    assert.equal(s.observedGeneration, 4);
    assert.equal(s.readyReplicas, 2);
    assert.equal(s.replicas, 2);
    assert.equal(s.userCount, 3);
    assert.equal(s.selector, 'app.kubernetes.io/name=sluice-relay,app.kubernetes.io/instance=mail');
    assert.deepEqual(
      s.conditions.map((c) => [c.type, c.status, c.reason]),
      [
        ['Ready', 'True', 'PodsReady'],
        ['Progressing', 'False', 'UpToDate'],
        ['Degraded', 'False', 'AsExpected'],
      ],
    );
    assert.ok(s.conditions.every((c) => c.observedGeneration === 4));
  });

  it('says how many pods are ready when some are not', () => {
    const c = condition(facts({ statefulSet: { replicas: 2, readyReplicas: 1 } }), 'Ready');
    assert.equal(c.status, 'False');
    assert.equal(c.reason, 'PodsNotReady');
    assert.equal(c.message, '1 of 2 relay pods ready');
  });

  it('is Progressing while the StatefulSet rolls out a new template', () => {
    const c = condition(
      facts({
        statefulSet: {
          generation: 3,
          observedGeneration: 3,
          replicas: 2,
          readyReplicas: 2,
          updatedReplicas: 1,
        },
      }),
      'Progressing',
    );
    assert.equal(c.status, 'True');
    assert.equal(c.reason, 'RollingUpdate');
    assert.equal(c.message, '1 of 2 relay pods run the current configuration');
  });

  it('is Degraded without shared state when more than one pod may run', () => {
    const c = condition(facts({ sharedState: false }), 'Degraded');
    assert.equal(c.status, 'True');
    assert.equal(c.reason, 'NoSharedState');
    assert.equal(c.message, 'replicas > 1 without spec.redis: each pod counts rate limits alone');
    assert.equal(condition(facts({ sharedState: false, multiplePods: false }), 'Degraded').status, 'False');
  });

  it('is Degraded without shared state when a pod runs several workers', () => {
    const c = condition(
      facts({ sharedState: false, multiplePods: false, multipleWorkers: true }),
      'Degraded',
    );
    assert.equal(c.status, 'True');
    assert.equal(c.reason, 'NoSharedState');
    assert.equal(
      c.message,
      'workers other than 1 without spec.redis: each relay process counts rate limits alone',
    );
    assert.equal(
      condition(facts({ sharedState: true, multiplePods: false, multipleWorkers: true }), 'Degraded').status,
      'False',
    );
  });

  it('names the rejected SmtpUsers and their reasons', () => {
    const c = condition(
      facts({
        sharedState: false,
        rejectedUsers: [
          { name: 'bob', reason: 'SecretNotFound' },
          { name: 'carol', reason: 'DuplicateUsername' },
        ],
      }),
      'Degraded',
    );
    assert.equal(c.reason, 'UsersRejected', 'the first problem gives the reason');
    assert.match(
      c.message ?? '',
      /2 SmtpUsers not in the users file: bob \(SecretNotFound\), carol \(DuplicateUsername\)/,
    );
    assert.match(c.message ?? '', /each pod counts rate limits alone/, 'every problem is in the message');
  });

  it('puts a config the relay refuses into Ready, Progressing and Degraded', () => {
    const f = facts({ configError: 'listeners[1].port: 587 is already used by listeners[0]' });
    for (const type of ['Ready', 'Degraded'] as const) {
      const c = condition(f, type);
      assert.equal(c.reason, 'ConfigInvalid');
      assert.match(c.message ?? '', /587 is already used/);
    }
    assert.equal(condition(f, 'Ready').status, 'False');
    assert.equal(condition(f, 'Degraded').status, 'True');
    assert.equal(condition(f, 'Progressing').status, 'False');
  });

  it('puts an object the API server refused first in Degraded, with its message', () => {
    const c = condition(
      facts({
        applyFailures: [
          {
            reason: 'ApplyFailed',
            message: 'Service mail-smtp: 403 Forbidden: Services are not allowed here',
          },
        ],
        missingSecrets: ['Secret relay-tls (spec.tlsSecretName) not found'],
      }),
      'Degraded',
    );
    assert.equal(c.status, 'True');
    assert.equal(c.reason, 'ApplyFailed');
    assert.match(
      c.message ?? '',
      /^Service mail-smtp: 403 Forbidden: Services are not allowed here; Secret relay-tls/,
    );
  });

  it('reports missing Secrets the policy names', () => {
    const c = condition(
      facts({ missingSecrets: ['Secret relay-tls (spec.tlsSecretName) not found'] }),
      'Degraded',
    );
    assert.equal(c.reason, 'SecretNotFound');
    assert.match(c.message ?? '', /relay-tls/);
  });

  it('is not Ready at zero replicas, and says so', () => {
    const c = condition(
      facts({ desiredReplicas: 0, statefulSet: { replicas: 0, readyReplicas: 0 } }),
      'Ready',
    );
    assert.equal(c.reason, 'ScaledToZero');
  });

  it('keeps lastTransitionTime while a condition keeps its status', () => {
    const first = policyStatus(facts({ statefulSet: { replicas: 2, readyReplicas: 0 } }), undefined, T0);
    const still = policyStatus(
      facts({ statefulSet: { replicas: 2, readyReplicas: 1 } }),
      first.conditions,
      T1,
    );
    const ready = findCondition(still.conditions, 'Ready');
    assert.equal(ready?.message, '1 of 2 relay pods ready');
    assert.equal(ready?.lastTransitionTime, T0, 'still False: the transition time stays');
    const now = policyStatus(facts(), still.conditions, T1);
    assert.equal(findCondition(now.conditions, 'Ready')?.lastTransitionTime, T1, 'False → True moves it');
    assert.deepEqual(
      policyStatus(facts(), now.conditions, '2026-02-01T00:00:00.000Z'),
      now,
      'same facts, same status',
    );
  });
});
