// SendingDomains against a real kube-apiserver and a real DNS server on loopback: the
// operator makes the DKIM key Secrets, says in status what to publish, sees DNS serve it,
// and only then puts the key into the relay config; a signature made with the key the
// pods mount verifies (mailauth) against the same DNS. Rotation runs on the operator's
// clock, which the test moves (no kube-controller-manager runs: no garbage collector).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RelayConfig } from '@sluice/relay/config-schema';
import { startDnsServer, type TestDnsServer } from '@sluice/relay/testing';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { parse } from 'yaml';
import type { SendingDomain } from '../src/api/types.ts';
import { Controller } from '../src/controller/controller.ts';
import { KubeClient, type KubeObject, loadKubeConfig } from '../src/kube/client.ts';
import { CONFIG_MAPS, type ResourceType, SECRETS } from '../src/kube/resources.ts';
import { resolverLookup } from '../src/reconcile/dns-checks.ts';
import { type SecretObject, secretValue } from '../src/reconcile/policy-inputs.ts';
import { apiServerSkip, type ControlPlane, startApiServer } from '../src/testing/api-server.ts';

const skip = apiServerSkip();

const EVENTS: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};
const HOUR = 3600_000;

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

interface StatefulSetObject extends KubeObject {
  spec: { template: { spec: { volumes: Array<Record<string, unknown>> } } };
}

type ConfigVolume = {
  projected: { sources: Array<{ configMap?: { name: string }; secret?: { name: string } }> };
};

/** The key shards the relay pods mount: the Secret sources of the config volume, beside config.yaml. */
function keyShardNames(sts: StatefulSetObject | undefined): string[] | undefined {
  const volume = sts?.spec.template.spec.volumes.find((v) => v.name === 'config') as ConfigVolume | undefined;
  return volume?.projected.sources.flatMap((s) => (s.secret ? [s.secret.name] : []));
}

describe('SendingDomain on a real API server', { skip, timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  let dns: TestDnsServer;
  let controller: Controller;
  let client: KubeClient;
  let clock = Date.parse('2026-01-01T00:00:00Z');

  before(async () => {
    ({ cp, admin } = await startApiServer());
    dns = await startDnsServer();
    client = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { instance: 'sd-test' });
    controller = new Controller({
      client,
      workers: 2,
      resyncMs: 250,
      queue: { baseDelayMs: 50, maxDelayMs: 1000 },
      dns: resolverLookup([dns.address], 1000),
      dnsCheckIntervalMs: 200,
      now: () => clock,
    });
    controller.start();
  });

  after(async () => {
    await controller?.stop();
    await dns?.close();
    await cp?.stop();
  });

  const resolve = (name: string, type: string) =>
    resolverLookup([dns.address]).resolve(name, type) as Promise<string[][]>;
  const domainOf = (ns: string, name: string) =>
    admin.get<SendingDomain>('sluice.dev/v1alpha1', 'SendingDomain', ns, name);
  const conditionOf = (d: SendingDomain | undefined, type: string) =>
    (d?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
  const configOf = async (ns: string): Promise<RelayConfig | undefined> => {
    const cm = await admin.get<KubeObject & { data?: Record<string, string> }>(
      'v1',
      'ConfigMap',
      ns,
      'mail-relay-config',
    );
    const text = cm?.data?.['config.yaml'];
    return text ? (parse(text) as RelayConfig) : undefined;
  };
  const secretOf = (ns: string, name: string) => admin.get<SecretObject>('v1', 'Secret', ns, name);

  async function setup(
    ns: string,
    domainSpec: Record<string, unknown>,
    policySpec: Record<string, unknown> = {},
  ) {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'RelayPolicy',
      metadata: { name: 'mail', namespace: ns },
      spec: { hostname: 'relay.example.net', ...policySpec },
    } as KubeObject);
    return admin.create<SendingDomain>({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name: 'customer', namespace: ns },
      spec: { policyRef: { name: 'mail' }, ...domainSpec },
    } as KubeObject);
  }

  /** Serves every DKIM TXT record the status lists for `selector` (all of them without one). */
  async function publishKeys(ns: string, selector?: string, name = 'customer'): Promise<void> {
    const d = await domainOf(ns, name);
    const records = (d?.status?.records ?? []).filter(
      (r) => r.purpose === 'DKIM' && r.type === 'TXT' && (!selector || r.selector?.startsWith(selector)),
    );
    assert.ok(records.length > 0, 'status lists DKIM records');
    for (const r of records) dns.setTxt(r.name, [r.value]);
  }

  /** The key shard Secrets the relay pods mount (their dkim volume's sources). */
  async function keyShards(ns: string): Promise<SecretObject[]> {
    const sts = await admin.get<StatefulSetObject>('apps/v1', 'StatefulSet', ns, 'mail-relay');
    return Promise.all(
      (keyShardNames(sts) ?? []).map(async (name) => {
        const shard = await secretOf(ns, name);
        assert.ok(shard, `the mounted Secret ${name} exists`);
        return shard;
      }),
    );
  }

  /** A private key file as the relay pods see it in /etc/sluice/dkim. */
  async function keyInShards(ns: string, file: string): Promise<string | undefined> {
    for (const shard of await keyShards(ns)) {
      const value = secretValue(shard, file);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  /** A message signed as the relay would with the config's keys, read from the Secrets the pods mount. */
  async function signAsRelay(ns: string, config: RelayConfig, from = 'customer.example'): Promise<Buffer> {
    const message = Buffer.from(
      `From: Alice <alice@${from}>\r\nTo: bob@elsewhere.example\r\nSubject: hello\r\n` +
        `Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@${from}>\r\n\r\nHello.\r\n`,
    );
    const signatureData = await Promise.all(
      config.dkim.keys.map(async (k) => {
        // /etc/sluice/config/<file>: the key shards' files side by side in one volume
        const privateKey = await keyInShards(ns, k.privateKeyFile.split('/').at(-1) ?? '');
        assert.ok(privateKey, `${k.privateKeyFile} is in a key shard Secret`);
        return { signingDomain: k.domain, selector: k.selector, privateKey, algorithm: k.algorithm };
      }),
    );
    const [first] = signatureData;
    assert.ok(first);
    const signed = await dkimSign(message, { ...first, canonicalization: 'relaxed/relaxed', signatureData });
    assert.deepEqual(signed.errors, []);
    return Buffer.concat([Buffer.from(signed.signatures), message]);
  }

  async function verified(raw: Buffer): Promise<string[][]> {
    const result = await dkimVerify(raw, { resolver: resolve });
    return result.results.map((r) => [r.status.result, r.selector ?? '']);
  }

  it('generates keys into owned Secrets, shows the records, and signs once DNS serves them', async () => {
    const ns = 'sd-keys';
    const created = await setup(ns, {
      domain: 'customer.example',
      users: ['alice'],
      dkim: { ed25519: true },
    });

    const pending = await waitFor('status with the DNS records', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.records?.length ? d : undefined;
    });
    assert.equal(conditionOf(pending, 'DkimPublished')?.reason, 'NotPublished');
    assert.equal(conditionOf(pending, 'Ready')?.status, 'False');
    assert.equal(conditionOf(pending, 'DmarcPolicy')?.reason, 'Missing');
    assert.equal(conditionOf(pending, 'SpfAuthorizesRelay')?.reason, 'Missing');
    const byName = new Map((pending.status?.records ?? []).map((r) => [`${r.purpose} ${r.name}`, r]));
    const rsa = byName.get('DKIM sluice1._domainkey.customer.example');
    assert.ok(rsa);
    assert.match(rsa.value, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{390,}$/);
    assert.deepEqual(
      rsa.strings?.map((s) => Buffer.byteLength(s) <= 255),
      [true, true],
    );
    assert.equal(rsa.strings?.join(''), rsa.value);
    assert.match(
      byName.get('DKIM sluice1-ed25519._domainkey.customer.example')?.value ?? '',
      /^v=DKIM1; k=ed25519; p=/,
    );
    assert.equal(byName.get('SPF customer.example')?.value, 'v=spf1 include:spf.relay.example.net ~all');
    assert.equal(
      byName.get('DMARC _dmarc.customer.example')?.value,
      'v=DMARC1; p=none; rua=mailto:postmaster@customer.example',
    );
    assert.deepEqual(
      pending.status?.keys?.map((k) => [k.selector, k.state, k.published]),
      [['sluice1', 'Pending', false]],
    );

    const secret = await secretOf(ns, 'customer-dkim-sluice1');
    assert.ok(secret);
    assert.deepEqual(
      secret.metadata.ownerReferences?.map((r) => [r.kind, r.uid, r.controller]),
      [['SendingDomain', created.metadata.uid, true]],
    );
    assert.equal(secret.metadata.labels?.['app.kubernetes.io/managed-by'], 'sluice-operator');
    assert.match(secretValue(secret, 'rsa-sha256.pem') ?? '', /^-----BEGIN PRIVATE KEY-----/);

    // the users may send as the domain at once; nothing signs before DNS serves the key
    const before = await waitFor('the sending domain in the relay config', async () => {
      const c = await configOf(ns);
      return c?.senders.domains.length ? c : undefined;
    });
    assert.deepEqual(before.senders.domains, [{ domain: 'customer.example', users: ['alice'] }]);
    assert.deepEqual(before.dkim.keys, []);
    // the config and the StatefulSet are separate writes of one pass: wait for the volume too
    const shardNames = await waitFor('the key shard mounted in the relay pods', async () =>
      keyShardNames(await admin.get<StatefulSetObject>('apps/v1', 'StatefulSet', ns, 'mail-relay')),
    );
    assert.deepEqual(shardNames, ['mail-relay-dkim-1-0']);
    // the pending key is in the pods' volume already: it is there before the config names it
    await waitFor('the pending key in the key shard', async () =>
      (await keyInShards(ns, 'sluice1._domainkey.customer.example.rsa-sha256.pem'))?.startsWith(
        '-----BEGIN PRIVATE KEY-----',
      ),
    );

    // DNS is asked again and again; nothing unchanged is written again
    const writes = client.writes;
    const lookups = dns.queries('sluice1._domainkey.customer.example');
    await waitFor(
      'three more lookups',
      () => dns.queries('sluice1._domainkey.customer.example') >= lookups + 3,
    );
    assert.equal(client.writes, writes, 'no writes');

    await publishKeys(ns);
    dns.setTxt('customer.example', ['v=spf1 include:spf.relay.example.net ~all']);
    dns.setTxt('_dmarc.customer.example', ['v=DMARC1; p=reject; rua=mailto:d@customer.example']);
    const ready = await waitFor('Ready', async () => {
      const d = await domainOf(ns, 'customer');
      return conditionOf(d, 'Ready')?.status === 'True' ? d : undefined;
    });
    assert.equal(ready.status?.signingSelector, 'sluice1');
    assert.equal(conditionOf(ready, 'DkimPublished')?.reason, 'Published');
    assert.equal(conditionOf(ready, 'SpfAuthorizesRelay')?.reason, 'Authorized');
    assert.equal(conditionOf(ready, 'DmarcPolicy')?.reason, 'Reject');

    const config = await waitFor('the keys in the relay config', async () => {
      const c = await configOf(ns);
      return c?.dkim.keys.length === 2 ? c : undefined;
    });
    assert.deepEqual(
      config.dkim.keys.map((k) => [k.domain, k.selector, k.algorithm, k.privateKeyFile]),
      [
        [
          'customer.example',
          'sluice1',
          'rsa-sha256',
          '/etc/sluice/config/sluice1._domainkey.customer.example.rsa-sha256.pem',
        ],
        [
          'customer.example',
          'sluice1-ed25519',
          'ed25519-sha256',
          '/etc/sluice/config/sluice1._domainkey.customer.example.ed25519-sha256.pem',
        ],
      ],
    );
    assert.deepEqual(await verified(await signAsRelay(ns, config)), [
      ['pass', 'sluice1'],
      ['pass', 'sluice1-ed25519'],
    ]);

    // a DNS failure changes nothing; a record that is gone stops the signing with it
    const name = 'sluice1._domainkey.customer.example';
    dns.setBehaviour(name, 'servfail');
    clock += HOUR;
    const asked = dns.queries(name);
    await waitFor('two more lookups', () => dns.queries(name) >= asked + 4);
    const during = await domainOf(ns, 'customer');
    assert.equal(conditionOf(during, 'DkimPublished')?.status, 'True');
    assert.equal((await configOf(ns))?.dkim.keys.length, 2);
    dns.remove(name);
    const gone = await waitFor('NotPublished', async () => {
      const d = await domainOf(ns, 'customer');
      return conditionOf(d, 'DkimPublished')?.reason === 'NotPublished' ? d : undefined;
    });
    assert.equal(conditionOf(gone, 'Ready')?.reason, 'DkimNotPublished');
    await waitFor('no key in the config', async () => (await configOf(ns))?.dkim.keys.length === 0);

    // no private key in status, Events or ConfigMaps
    const pem = secretValue(secret, 'rsa-sha256.pem') ?? '';
    const body = pem.split('\n').slice(1, 3).join('');
    const { items: events } = await admin.list(EVENTS, { namespace: ns });
    const { items: configMaps } = await admin.list(CONFIG_MAPS, { namespace: ns });
    for (const [what, text] of [
      ['status', JSON.stringify((await domainOf(ns, 'customer'))?.status)],
      ['events', JSON.stringify(events)],
      ['configmaps', JSON.stringify(configMaps)],
    ] as const) {
      assert.ok(
        !text.includes('PRIVATE KEY') && !text.includes(body.slice(0, 40)),
        `no private key in ${what}`,
      );
    }
  });

  it('rotates: a new selector waits for DNS, then signs; the old key stays until its removal time', async () => {
    const ns = 'sd-rotation';
    await setup(
      ns,
      { domain: 'customer.example', dkim: { rotationPeriod: '72h' } },
      { delivery: { retry: { queueLifetimeSeconds: 3600 } } },
    );
    // the first test's records still serve the other namespace's keys: replace them
    await waitFor('the first key', async () => (await domainOf(ns, 'customer'))?.status?.keys?.length === 1);
    await publishKeys(ns, 'sluice1');
    const first = await waitFor('sluice1 signing', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.signingSelector === 'sluice1' ? d : undefined;
    });
    const activeSince = Date.parse(first.status?.keys?.[0]?.activeSince ?? '');
    assert.equal(activeSince, clock);
    assert.equal(first.status?.nextRotation, new Date(clock + 72 * HOUR).toISOString());
    const oldConfig = await waitFor('sluice1 in the config', async () => {
      const c = await configOf(ns);
      return c?.dkim.keys[0]?.selector === 'sluice1' ? c : undefined;
    });
    const signedWithOld = await signAsRelay(ns, oldConfig);

    clock += 73 * HOUR;
    controller.resync();
    const rotating = await waitFor('a new key under sluice2', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.keys?.some((k) => k.selector === 'sluice2') ? d : undefined;
    });
    assert.deepEqual(
      rotating.status?.keys?.map((k) => [k.selector, k.state]),
      [
        ['sluice1', 'Active'],
        ['sluice2', 'Pending'],
      ],
    );
    assert.equal(
      rotating.status?.signingSelector,
      'sluice1',
      'the old key signs until DNS serves the new one',
    );
    assert.match(
      conditionOf(rotating, 'DkimPublished')?.message ?? '',
      /sluice2\._domainkey\.customer\.example/,
    );
    assert.equal((await configOf(ns))?.dkim.keys[0]?.selector, 'sluice1');

    await publishKeys(ns, 'sluice2');
    const switched = await waitFor('sluice2 signing', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.signingSelector === 'sluice2' ? d : undefined;
    });
    const old = switched.status?.keys?.find((k) => k.selector === 'sluice1');
    assert.equal(old?.state, 'Retiring');
    // queue lifetime (1 h) plus the margin (24 h) after it last signed
    assert.equal(old?.removableAfter, new Date(clock + 25 * HOUR).toISOString());
    const newConfig = await waitFor('sluice2 in the config', async () => {
      const c = await configOf(ns);
      return c?.dkim.keys[0]?.selector === 'sluice2' ? c : undefined;
    });
    // in the overlap both selectors verify: mail queued under the old key is still good
    assert.deepEqual(await verified(signedWithOld), [['pass', 'sluice1']]);
    assert.deepEqual(await verified(await signAsRelay(ns, newConfig)), [['pass', 'sluice2']]);
    assert.ok(await secretOf(ns, 'customer-dkim-sluice1'), 'the old key is kept until its removal time');

    clock += 25 * HOUR + 1000;
    controller.resync();
    await waitFor(
      'the old key Secret deleted',
      async () => (await secretOf(ns, 'customer-dkim-sluice1')) === undefined,
    );
    const after = await waitFor('status without the old key', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.keys?.length === 1 ? d : undefined;
    });
    assert.deepEqual(
      after.status?.keys?.map((k) => [k.selector, k.state]),
      [['sluice2', 'Active']],
    );
    const { items: events } = await admin.list<KubeObject & { reason?: string }>(EVENTS, { namespace: ns });
    const reasons = new Set(events.map((e) => e.reason));
    for (const r of ['DkimKeyCreated', 'DkimKeyActive', 'DkimKeyReplaced', 'DkimKeyRemoved'])
      assert.ok(reasons.has(r), r);
    const secrets = await admin.list(SECRETS, { namespace: ns });
    assert.ok(!secrets.items.some((s) => s.metadata.name === 'customer-dkim-sluice1'));
  });

  it("signs mail from a domain without a served key with the provider's own SendingDomain", async () => {
    const ns = 'sd-default';
    await setup(ns, { domain: 'customer.example' }, { sendingDomains: { defaultSigner: 'provider' } });
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name: 'provider', namespace: ns },
      spec: { domain: 'relay.example.net', policyRef: { name: 'mail' }, users: [] },
    } as KubeObject);
    await waitFor(
      'the provider key',
      async () => (await domainOf(ns, 'provider'))?.status?.keys?.length === 1,
    );
    await publishKeys(ns, undefined, 'provider');
    const config = await waitFor('the default signer in the config', async () => {
      const c = await configOf(ns);
      return c?.dkim.defaultSigner ? c : undefined;
    });
    assert.deepEqual(
      [config.dkim.defaultSigner?.domain, config.dkim.defaultSigner?.selector],
      ['relay.example.net', 'sluice1'],
    );
    assert.deepEqual(
      config.senders.domains.map((d) => [d.domain, d.users]),
      [
        ['customer.example', undefined],
        ['relay.example.net', []],
      ].sort(),
    );
    const signer = config.dkim.defaultSigner;
    assert.ok(signer);
    const raw = await signAsRelay(ns, { ...config, dkim: { keys: [signer] } });
    assert.deepEqual(await verified(raw), [['pass', 'sluice1']]);
  });

  it('reports a damaged key Secret, keeps it, and makes a new key once it is deleted', async () => {
    const ns = 'sd-damaged';
    await setup(ns, { domain: 'damaged.example' });
    const first = await waitFor('the key Secret', () => secretOf(ns, 'customer-dkim-sluice1'));
    await admin.mergePatch(first, { stringData: { 'rsa-sha256.pem': 'not a key' } });
    const reported = await waitFor('KeySecretInvalid', async () => {
      const d = await domainOf(ns, 'customer');
      return conditionOf(d, 'Ready')?.reason === 'KeySecretInvalid' ? d : undefined;
    });
    assert.match(
      conditionOf(reported, 'Ready')?.message ?? '',
      /Secret customer-dkim-sluice1 holds no valid DKIM key/,
    );
    assert.equal(
      secretValue(await secretOf(ns, 'customer-dkim-sluice1'), 'rsa-sha256.pem'),
      'not a key',
      'kept',
    );

    await admin.delete('v1', 'Secret', ns, 'customer-dkim-sluice1');
    const renewed = await waitFor('a new key', async () => {
      const pem = secretValue(await secretOf(ns, 'customer-dkim-sluice1'), 'rsa-sha256.pem');
      return pem?.startsWith('-----BEGIN PRIVATE KEY-----') ? pem : undefined;
    });
    assert.ok(renewed);
    await waitFor('Ready no longer blames the Secret', async () => {
      const reason = conditionOf(await domainOf(ns, 'customer'), 'Ready')?.reason;
      return reason !== undefined && reason !== 'KeySecretInvalid';
    });
  });

  it('uses the older of two SendingDomains that name the same domain, and the other once it is gone', async () => {
    const ns = 'sd-duplicate';
    await setup(ns, { domain: 'twice.example' });
    const first = await waitFor('the first one checked', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.conditions ? d : undefined;
    });
    // creation times have whole seconds: the second one must be created in a later second
    // to be the younger (with equal times the name decides, and 'again' sorts first)
    const created = Date.parse(first.metadata.creationTimestamp ?? '');
    await waitFor('a later second', () => Date.now() >= created + 1000);
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name: 'again', namespace: ns },
      spec: { domain: 'twice.example', policyRef: { name: 'mail' }, users: ['bob'] },
    } as KubeObject);
    const duplicate = await waitFor('DuplicateDomain', async () => {
      const d = await domainOf(ns, 'again');
      return conditionOf(d, 'Ready')?.reason === 'DuplicateDomain' ? d : undefined;
    });
    assert.match(
      conditionOf(duplicate, 'Ready')?.message ?? '',
      /SendingDomain customer already covers twice\.example/,
    );
    assert.deepEqual((await configOf(ns))?.senders.domains, [{ domain: 'twice.example' }]);

    await admin.delete('sluice.dev/v1alpha1', 'SendingDomain', ns, 'customer');
    await waitFor('the other one counts', async () => {
      const reason = conditionOf(await domainOf(ns, 'again'), 'Ready')?.reason;
      return reason !== undefined && reason !== 'DuplicateDomain';
    });
    await waitFor('its users in the config', async () => {
      const domains = (await configOf(ns))?.senders.domains;
      return JSON.stringify(domains) === JSON.stringify([{ domain: 'twice.example', users: ['bob'] }]);
    });
  });

  it('adds, rotates and removes keys in the policy key shard: Secret data changes, the pod template does not', async () => {
    const ns = 'sd-no-roll';
    await setup(ns, { domain: 'noroll.example', dkim: { rotationPeriod: '72h' } });
    await waitFor('the first key', async () => (await domainOf(ns, 'customer'))?.status?.keys?.length === 1);
    await publishKeys(ns, 'sluice1');
    await waitFor(
      'sluice1 in the config',
      async () => (await configOf(ns))?.dkim.keys[0]?.selector === 'sluice1',
    );
    const stsOf = () => admin.get<StatefulSetObject>('apps/v1', 'StatefulSet', ns, 'mail-relay');
    const start = await waitFor('the StatefulSet', stsOf);
    const template = JSON.stringify(start.spec.template);
    const generation = start.metadata.generation;
    const shardName = 'mail-relay-dkim-1-0';
    const keyOf = async (file: string) => secretValue(await secretOf(ns, shardName), file);
    const keySecretValue = async (name: string) => secretValue(await secretOf(ns, name), 'rsa-sha256.pem');

    const shard = await secretOf(ns, shardName);
    assert.deepEqual(
      shard?.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.controller]),
      [['RelayPolicy', 'mail', true]],
    );
    assert.equal(shard?.metadata.labels?.['app.kubernetes.io/managed-by'], 'sluice-operator');
    assert.equal(shard?.metadata.labels?.['app.kubernetes.io/instance'], 'mail');
    assert.equal(
      await keyOf('sluice1._domainkey.noroll.example.rsa-sha256.pem'),
      await keySecretValue('customer-dkim-sluice1'),
    );

    // a second SendingDomain: its key arrives in the shard, then in the config once DNS serves it
    await admin.create({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name: 'second', namespace: ns },
      spec: { domain: 'second.example', policyRef: { name: 'mail' } },
    } as KubeObject);
    const secondKey = await waitFor('the second key in the shard', () =>
      keyOf('sluice1._domainkey.second.example.rsa-sha256.pem'),
    );
    assert.equal(secondKey, await keySecretValue('second-dkim-sluice1'));
    await publishKeys(ns, 'sluice1', 'second');
    await waitFor('both domains sign', async () => (await configOf(ns))?.dkim.keys.length === 2);

    // a rotation: the new key is in the shard while it waits for DNS, and signs once served
    clock += 73 * HOUR;
    controller.resync();
    const rotated = await waitFor('the sluice2 key in the shard', () =>
      keyOf('sluice2._domainkey.noroll.example.rsa-sha256.pem'),
    );
    assert.equal(rotated, await keySecretValue('customer-dkim-sluice2'));
    await publishKeys(ns, 'sluice2', 'customer');
    const config = await waitFor('sluice2 in the config', async () => {
      const c = await configOf(ns);
      return c?.dkim.keys.some((k) => k.domain === 'noroll.example' && k.selector === 'sluice2')
        ? c
        : undefined;
    });
    assert.deepEqual(config.dkim.keys.map((k) => k.privateKeyFile).sort(), [
      '/etc/sluice/config/sluice1._domainkey.second.example.rsa-sha256.pem',
      '/etc/sluice/config/sluice2._domainkey.noroll.example.rsa-sha256.pem',
    ]);

    // a removed SendingDomain: its key leaves the shard (and the config)
    await admin.delete('sluice.dev/v1alpha1', 'SendingDomain', ns, 'second');
    await waitFor(
      'the second key gone from the shard',
      async () => (await keyOf('sluice1._domainkey.second.example.rsa-sha256.pem')) === undefined,
    );
    await waitFor('one domain signs', async () => (await configOf(ns))?.dkim.keys.length === 1);

    const end = await stsOf();
    assert.equal(end?.metadata.generation, generation, 'the StatefulSet spec never changed');
    assert.equal(JSON.stringify(end?.spec.template), template, 'the pod template never changed');
  });

  it('with CNAME delegation, DNS answers through the CNAMEs into the provider zone: Ready, and the key signs', async () => {
    const ns = 'sd-cname';
    await setup(
      ns,
      { domain: 'cname.example', dns: { mode: 'CNAME' }, dkim: { ed25519: true } },
      { sendingDomains: { delegationZone: 'dkim.provider.example' } },
    );
    const pending = await waitFor('the records', async () => {
      const d = await domainOf(ns, 'customer');
      return d?.status?.records?.some((r) => r.type === 'CNAME') ? d : undefined;
    });
    const dkim = (pending.status?.records ?? []).filter((r) => r.purpose === 'DKIM');
    // the customer points the selectors at the provider zone once; the provider serves the keys there
    for (const r of dkim.filter((r) => r.type === 'CNAME')) {
      assert.equal(r.zone, 'customer');
      dns.setCname(r.name, r.value);
    }
    const provider = dkim.filter((r) => r.type === 'TXT');
    assert.deepEqual(
      provider.map((r) => [r.zone, r.name]),
      [
        ['provider', 'sluice1._domainkey.cname.example.dkim.provider.example'],
        ['provider', 'sluice1-ed25519._domainkey.cname.example.dkim.provider.example'],
      ],
    );
    const asked = dns.queries('sluice1._domainkey.cname.example');
    await waitFor(
      'two lookups through the CNAME',
      () => dns.queries('sluice1._domainkey.cname.example') >= asked + 2,
    );
    assert.equal(
      conditionOf(await domainOf(ns, 'customer'), 'DkimPublished')?.reason,
      'NotPublished',
      'the CNAMEs alone publish no key',
    );
    for (const r of provider) dns.setTxt(r.name, [r.value]);
    dns.setTxt('cname.example', ['v=spf1 include:spf.relay.example.net ~all']);
    dns.setTxt('_dmarc.cname.example', ['v=DMARC1; p=quarantine']);
    const ready = await waitFor('Ready', async () => {
      const d = await domainOf(ns, 'customer');
      return conditionOf(d, 'Ready')?.status === 'True' ? d : undefined;
    });
    assert.equal(conditionOf(ready, 'DkimPublished')?.reason, 'Published');
    assert.equal(ready.status?.signingSelector, 'sluice1');
    const config = await waitFor('the keys in the relay config', async () => {
      const c = await configOf(ns);
      return c?.dkim.keys.length === 2 ? c : undefined;
    });
    const raw = await signAsRelay(ns, config, 'cname.example');
    // the verifier looks up s._domainkey.cname.example and is answered through the CNAME
    assert.deepEqual(await verified(raw), [
      ['pass', 'sluice1'],
      ['pass', 'sluice1-ed25519'],
    ]);
  });

  it('refuses at admission what the schema can check', async () => {
    const ns = 'sd-admission';
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const attempt = (name: string, spec: Record<string, unknown>) =>
      cp.kubectl(['apply', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'sluice.dev/v1alpha1',
          kind: 'SendingDomain',
          metadata: { name, namespace: ns },
          spec: { domain: 'customer.example', policyRef: { name: 'mail' }, ...spec },
        }),
      });
    await assert.rejects(
      attempt('same-selectors', { dkim: { selectors: ['a', 'a'] } }),
      /selectors must differ/,
    );
    await assert.rejects(attempt('short', { dkim: { rotationPeriod: '5m' } }), /at least 1h/);
    await assert.rejects(attempt('upper', { domain: 'Customer.Example' }), /spec.domain/);
  });
});
