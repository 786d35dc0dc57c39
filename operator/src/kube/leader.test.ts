// Leader election timing with an injected clock and an in-memory Lease store that has the
// API server's optimistic concurrency (resourceVersion, 409 Conflict). The same election
// runs against a real kube-apiserver in operator/test/controller.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { KubeApiError } from './api-error.ts';
import type { Lease } from './client.ts';
import { LeaderElector, type LeaseStore } from './leader.ts';

class MemoryLeases {
  lease: Lease | undefined;
  #rv = 0;
  down = new Set<string>();

  as(identity: string): LeaseStore {
    const check = () => {
      if (this.down.has(identity)) throw new KubeApiError(0, '', 'connection refused');
    };
    return {
      getLease: async () => {
        check();
        return structuredClone(this.lease);
      },
      createLease: async (lease) => {
        check();
        if (this.lease) throw new KubeApiError(409, 'AlreadyExists', 'exists');
        this.lease = {
          ...structuredClone(lease),
          metadata: { ...lease.metadata, resourceVersion: String(++this.#rv) },
        };
        return structuredClone(this.lease);
      },
      replaceLease: async (lease) => {
        check();
        if (lease.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) {
          throw new KubeApiError(409, 'Conflict', 'the object has been modified');
        }
        this.lease = {
          ...structuredClone(lease),
          metadata: { ...lease.metadata, resourceVersion: String(++this.#rv) },
        };
        return structuredClone(this.lease);
      },
    };
  }
}

function elector(store: MemoryLeases, identity: string, clock: { t: number }, events: string[]) {
  return new LeaderElector({
    leases: store.as(identity),
    namespace: 'ops',
    name: 'sluice-operator',
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    renewIntervalMs: 5,
    retryIntervalMs: 5,
    now: () => clock.t,
    onStartedLeading: () => {
      events.push(`${identity} started`);
    },
    onStoppedLeading: () => {
      events.push(`${identity} stopped`);
    },
  });
}

describe('leader election', () => {
  it('keeps a standby waiting while the leader renews, and hands over on release', async () => {
    const store = new MemoryLeases();
    const clock = { t: 1_000_000 };
    const events: string[] = [];
    const a = elector(store, 'a', clock, events);
    a.start();
    await waitFor('a leads', () => a.isLeader);
    const b = elector(store, 'b', clock, events);
    b.start();
    // the leader renews while time passes; the standby keeps seeing a fresh record
    for (let i = 0; i < 20; i++) {
      clock.t += 2_000;
      await new Promise((r) => setTimeout(r, 15));
    }
    assert.equal(b.isLeader, false);
    assert.equal(b.healthy, true, 'a standby that reads the lease is healthy');
    assert.equal(store.lease?.spec?.holderIdentity, 'a');
    await a.stop();
    assert.deepEqual(events, ['a started', 'a stopped']);
    await waitFor('b takes over at once after the release', () => b.isLeader);
    assert.equal(store.lease?.spec?.holderIdentity, 'b');
    assert.equal(store.lease?.spec?.leaseTransitions, 1);
    await b.stop();
  });

  it('takes over a lease whose holder stopped renewing once it expires', async () => {
    const store = new MemoryLeases();
    const clock = { t: 5_000_000 };
    const events: string[] = [];
    const a = elector(store, 'a', clock, events);
    a.start();
    await waitFor('a leads', () => a.isLeader);
    const b = elector(store, 'b', clock, events);
    b.start();
    store.down.add('a'); // a loses the API server
    await new Promise((r) => setTimeout(r, 30));
    clock.t += 11_000;
    await waitFor('a steps down after its renew deadline', () => !a.isLeader);
    assert.equal(b.isLeader, false, 'the lease has not expired for b yet');
    clock.t += 5_000;
    await waitFor('b takes over the expired lease', () => b.isLeader);
    assert.deepEqual(events, ['a started', 'a stopped', 'b started']);
    store.down.delete('a');
    await waitFor('a sees the new holder', () => a.healthy);
    assert.equal(a.isLeader, false);
    await a.stop();
    await b.stop();
  });
});
