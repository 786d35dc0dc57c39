// Reading the data of the Secrets the policies name, against a real API server: many at
// once in one paged list of the namespace that leaves the operator's own Secrets (the
// users shards) out, and a GET for a named Secret the list left out.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MANAGED_BY, MANAGED_BY_LABEL } from '../src/build/names.ts';
import { ReferencedSecrets } from '../src/controller/referenced-secrets.ts';
import type { KubeClient, KubeObject } from '../src/kube/client.ts';
import { apiListWatch, Informer } from '../src/kube/informer.ts';
import { keyOf, SECRETS } from '../src/kube/resources.ts';
import { type SecretObject, secretValue } from '../src/reconcile/policy-inputs.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../src/testing/api-server.ts';

const skip = apiServerSkip();
const NS = 'referenced';
const USERS = 80;

describe('the data of referenced Secrets, from a real API server', { skip, timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let meta: Informer<SecretObject>;

  const secret = (name: string, password: string, labels?: Record<string, string>) =>
    admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS, ...(labels ? { labels } : {}) },
      stringData: { password },
    } as KubeObject);

  before(async () => {
    ({ cp, admin } = await startApiServer());
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    for (let i = 0; i < USERS; i++) await secret(`user-${i}`, `password-${i}`);
    // one the operator manages (as its users shards are), which a policy names all the same
    await secret('managed', 'managed-password', { [MANAGED_BY_LABEL]: MANAGED_BY });
    meta = new Informer<SecretObject>({
      listWatch: apiListWatch(admin, SECRETS, { namespace: NS, metadataOnly: true }),
    });
    meta.start();
    await meta.synced();
  });
  after(async () => {
    await meta?.stop();
    await cp?.stop();
  });

  it('reads many in one list without the operator’s own Secrets, and GETs one of those that is named', async () => {
    const referenced = new ReferencedSecrets({ client: admin, meta });
    const keys = [...Array.from({ length: USERS }, (_, i) => keyOf(NS, `user-${i}`)), keyOf(NS, 'managed')];
    await referenced.ensure(keys);
    for (let i = 0; i < USERS; i++) {
      assert.equal(secretValue(referenced.get(NS, `user-${i}`), 'password'), `password-${i}`);
    }
    assert.equal(secretValue(referenced.get(NS, 'managed'), 'password'), 'managed-password');
    // one list page for the users' Secrets, one GET for the managed one the list left out
    assert.equal(referenced.reads, 2);
    // held at their versions: nothing is read again
    await referenced.ensure(keys);
    assert.equal(referenced.reads, 2);
  });

  it('lists in pages of the size asked', async () => {
    const pages: number[] = [];
    await admin.list<SecretObject>(SECRETS, {
      namespace: NS,
      pageSize: 16,
      onPage: (items) => pages.push(items.length),
    });
    assert.deepEqual(pages, [16, 16, 16, 16, 16, 1]);
  });
});
