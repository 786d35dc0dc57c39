import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { relayPolicy } from '../api/defaults.ts';
import { configMap, statefulSet } from '../build/workload.ts';
import type { KubeObject } from '../kube/client.ts';
import {
  APPLIED_HASH_ANNOTATION,
  appliedHash,
  foreignWrites,
  needsApply,
  stableStringify,
  withAppliedHash,
} from './applied-hash.ts';
import { statusHolds } from './conditions.ts';

const policy = relayPolicy({ name: 'mail', namespace: 'prod', uid: 'u1' }, { hostname: 'relay.example.net' });

/** What the API server returns: the applied object plus defaults, status and metadata. */
function asLive(applied: KubeObject): KubeObject {
  return {
    ...applied,
    metadata: {
      ...applied.metadata,
      resourceVersion: '42',
      uid: 'x',
      creationTimestamp: '2026-01-01T00:00:00Z',
    },
    status: { replicas: 0 },
  } as KubeObject;
}

describe('applied-hash comparison', () => {
  it('does not depend on key order', () => {
    assert.equal(
      stableStringify({ b: 1, a: { d: [2, { y: 1, x: 0 }], c: 3 } }),
      '{"a":{"c":3,"d":[2,{"x":0,"y":1}]},"b":1}',
    );
    const a = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'a', namespace: 'n' },
      data: { k: 'v' },
    };
    const b = {
      data: { k: 'v' },
      metadata: { namespace: 'n', name: 'a' },
      kind: 'ConfigMap',
      apiVersion: 'v1',
    };
    assert.equal(appliedHash(a), appliedHash(b));
  });

  it('skips the write when the live object carries the hash of the desired one', () => {
    const desired = withAppliedHash(statefulSet(policy, 'h1') as KubeObject);
    assert.equal(needsApply(desired, asLive(desired)), false);
    assert.equal(
      appliedHash(desired),
      desired.metadata.annotations?.[APPLIED_HASH_ANNOTATION],
      'ignores its own annotation',
    );
  });

  it('writes when anything the operator asks for changed, or the object is missing', () => {
    const before = withAppliedHash(configMap(policy, 'maxRecipients: 30\n') as KubeObject);
    const after = withAppliedHash(configMap(policy, 'maxRecipients: 5\n') as KubeObject);
    assert.equal(needsApply(after, asLive(before)), true);
    assert.equal(needsApply(after, undefined), true);
    const rolled = withAppliedHash(statefulSet(policy, 'h2') as KubeObject);
    assert.equal(needsApply(rolled, asLive(withAppliedHash(statefulSet(policy, 'h1') as KubeObject))), true);
  });

  it('writes when the live object was applied by someone without the annotation', () => {
    const desired = withAppliedHash(configMap(policy, 'x') as KubeObject);
    const foreign = { ...desired, metadata: { ...desired.metadata, annotations: {} } };
    assert.equal(needsApply(desired, foreign), true);
  });
});

describe('status comparison', () => {
  it('holds when every written field is equal, whatever else the live status has', () => {
    const desired = { observedGeneration: 2, conditions: [{ type: 'Ready', status: 'True' }] };
    assert.equal(statusHolds(desired, { ...desired, usage: { messages: 3 } }), true);
    assert.equal(statusHolds(desired, { ...desired, observedGeneration: 1 }), false);
    assert.equal(statusHolds(desired, undefined), false);
  });

  describe('drift: writes by other field managers', () => {
    const desired = withAppliedHash(statefulSet(policy, 'h1') as KubeObject);
    const withManagers = (entries: unknown[]): KubeObject => {
      const live = asLive(desired);
      return { ...live, metadata: { ...live.metadata, managedFields: entries } } as KubeObject;
    };
    const ours = {
      manager: 'sluice-operator',
      operation: 'Apply',
      time: '2026-01-01T00:00:00Z',
      fieldsV1: { 'f:spec': { 'f:replicas': {}, 'f:template': {} } },
    };

    it('finds a hand edit of a field the operator sets (kubectl edit of the image)', () => {
      const edit = {
        manager: 'kubectl-edit',
        operation: 'Update',
        time: '2026-01-01T00:01:00Z',
        fieldsV1: {
          'f:spec': {
            'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"relay"}': { 'f:image': {} } } } },
          },
        },
      };
      assert.deepEqual(foreignWrites(desired, withManagers([ours, edit]), 'sluice-operator'), [
        'kubectl-edit|Update||2026-01-01T00:01:00Z',
      ]);
      const scale = {
        manager: 'kubectl',
        operation: 'Update',
        subresource: 'scale',
        time: '2026-01-01T00:02:00Z',
        fieldsV1: { 'f:spec': { 'f:replicas': {} } },
      };
      assert.equal(
        foreignWrites(desired, withManagers([scale]), 'sluice-operator').length,
        1,
        'kubectl scale',
      );
    });

    it('leaves alone what only others set, status, and its own writes', () => {
      const entries = [
        ours,
        // a label the operator does not set
        {
          manager: 'kubectl-label',
          operation: 'Update',
          fieldsV1: { 'f:metadata': { 'f:labels': { 'f:team': {} } } },
        },
        // a container the operator does not have
        {
          manager: 'injector',
          operation: 'Update',
          fieldsV1: {
            'f:spec': {
              'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"sidecar"}': { '.': {} } } } },
            },
          },
        },
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          subresource: 'status',
          fieldsV1: { 'f:status': {} },
        },
      ];
      assert.deepEqual(foreignWrites(desired, withManagers(entries), 'sluice-operator'), []);
      // with autoscaling on the replica count is the HPA's, not the operator's
      const hpaScaled = {
        manager: 'kube-controller-manager',
        operation: 'Update',
        subresource: 'scale',
        fieldsV1: { 'f:spec': { 'f:replicas': {} } },
      };
      const { replicas: _r, ...specWithout } = (desired as KubeObject & { spec: Record<string, unknown> })
        .spec;
      const autoscaled = { ...desired, spec: specWithout } as KubeObject;
      assert.deepEqual(foreignWrites(autoscaled, withManagers([hpaScaled]), 'sluice-operator'), []);
    });
  });
});
