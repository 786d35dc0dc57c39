// What the SmtpUser cache holds, listed and watched from a real kube-apiserver: the spec
// with its defaults, the status, and none of the annotations or managedFields that would
// make 100,000 cached users outgrow the operator's memory.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { SmtpUser } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { apiListWatch, Informer } from '../kube/informer.ts';
import { SMTP_USERS } from '../kube/resources.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../testing/api-server.ts';
import { compactSmtpUser, StatusPool, StringPool } from './user-cache.ts';

const skip = apiServerSkip();
const NS = 'default';
/** A status the operator writes: Ready, Active. */
const READY = {
  observedGeneration: 1,
  conditions: [
    {
      type: 'Ready',
      status: 'True',
      reason: 'Active',
      message: 'The user can relay mail',
      lastTransitionTime: '2026-12-05T00:00:00Z',
      observedGeneration: 1,
    },
  ],
};

function user(name: string, note: string): SmtpUser {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'SmtpUser',
    metadata: {
      name,
      namespace: NS,
      labels: { tier: 'gold' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"copy"}', note },
    },
    spec: { username: `${name}@example.net`, policyRef: { name: 'isp' }, passwordSecretRef: { name } },
  } as unknown as SmtpUser;
}

describe('the SmtpUser cache', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let informer: Informer<SmtpUser>;

  before(async () => {
    ({ cp, admin } = await startApiServer());
    await admin.apply(user('alice', 'first') as never);
    const strings = new StringPool();
    const statuses = new StatusPool();
    informer = new Informer<SmtpUser>({
      listWatch: apiListWatch<SmtpUser>(admin, SMTP_USERS, { namespace: NS }),
      transform: (u, previous) => compactSmtpUser(u, strings, previous, statuses),
    });
    informer.start();
    await informer.synced();
  });
  after(async () => {
    await informer?.stop();
    await cp?.stop();
  });

  it('keeps the defaulted spec, labels and status, not annotations or managedFields', async () => {
    const listed = informer.get(NS, 'alice');
    assert.ok(listed);
    assert.equal(listed.metadata.annotations, undefined);
    assert.equal((listed.metadata as { managedFields?: unknown }).managedFields, undefined);
    assert.deepEqual(listed.metadata.labels, { tier: 'gold' });
    assert.equal(listed.spec.passwordSecretRef.key, 'password');
    assert.equal(listed.spec.suspended, false);

    // a watched change goes through the same transform, status included
    await admin.apply(user('bob', 'second') as never);
    await admin.patchStatus(SMTP_USERS, NS, 'bob', READY);
    const watched = await waitFor('bob with his status in the cache', async () => {
      const u = informer.get(NS, 'bob');
      return u?.status?.conditions?.length ? u : undefined;
    });
    assert.equal(watched.metadata.annotations, undefined);
    assert.equal(watched.spec.passwordSecretRef.key, 'password');
    assert.equal(watched.status?.conditions?.[0]?.reason, 'Active');
  });

  it('gives a new version the cached spec while the generation stays, and a new spec when it moves', async () => {
    const before = informer.get(NS, 'alice');
    assert.ok(before?.metadata.resourceVersion);
    // a status write (the operator makes one per user) is a new version of the same generation
    await admin.patchStatus(SMTP_USERS, NS, 'alice', { observedGeneration: 1 });
    const statusOnly = await waitFor('alice after her status write', async () => {
      const u = informer.get(NS, 'alice');
      return u && u.metadata.resourceVersion !== before.metadata.resourceVersion ? u : undefined;
    });
    assert.equal(statusOnly.metadata.generation, before.metadata.generation);
    assert.equal(statusOnly.spec, before.spec, 'the same spec object, not an equal copy');
    assert.equal(statusOnly.status?.observedGeneration, 1);

    // a spec change moves the generation: the new spec is read, with its defaults
    await admin.apply({
      ...user('alice', 'first'),
      spec: { ...user('alice', 'first').spec, suspended: true },
    } as never);
    const changed = await waitFor('alice suspended in the cache', async () => {
      const u = informer.get(NS, 'alice');
      return u?.spec.suspended ? u : undefined;
    });
    assert.notEqual(changed.spec, before.spec);
    assert.equal(changed.metadata.generation, (before.metadata.generation ?? 0) + 1);
    assert.equal(changed.spec.passwordSecretRef.key, 'password');
    assert.equal(before.spec.suspended, false, 'the cached version was not changed in place');
  });

  it('holds equal statuses once, frozen, and a status with usage as each user’s own', async () => {
    for (const name of ['carol', 'dave', 'erin']) {
      await admin.apply(user(name, name) as never);
      await admin.patchStatus(SMTP_USERS, NS, name, READY);
    }
    await admin.patchStatus(SMTP_USERS, NS, 'erin', { usage: { messages24h: 3 } });
    const [carol, dave, erin] = await waitFor('three statuses in the cache', async () => {
      const users = ['carol', 'dave', 'erin'].map((n) => informer.get(NS, n));
      return users.every((u) => u?.status?.conditions?.length) && users[2]?.status?.usage ? users : undefined;
    });
    assert.deepEqual(carol?.status, READY);
    assert.equal(carol?.status, dave?.status, 'one object for the equal statuses');
    assert.ok(Object.isFrozen(carol?.status) && Object.isFrozen(carol?.status?.conditions?.[0]));
    assert.throws(() => {
      (carol?.status as { observedGeneration: number }).observedGeneration = 2;
    }, TypeError);
    assert.notEqual(erin?.status, carol?.status);
    assert.equal(Object.isFrozen(erin?.status), false);
  });
});
