import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tracingOptionsFromEnv } from '@sluice/telemetry/tracing';
import { relayPolicy, smtpUser } from '../api/defaults.ts';
import type { SendingDomain } from '../api/types.ts';
import type { KubeObject } from '../kube/client.ts';
import { DKIM_KEY_LABEL, DKIM_KEY_LABEL_VALUE } from './dkim-keys.ts';
import {
  chooseDkimShardCount,
  type DkimKeyFile,
  dkimShardData,
  dkimShardSet,
  keyFileName,
} from './dkim-shards.ts';
import { networkSettingsFromEnv, relayNetworkPolicy } from './network-policy.ts';
import { buildRelayConfig, restartHash } from './relay-config.ts';
import { DEFAULT_RELAY_DEFAULTS, relayDefaultsFromEnv } from './relay-defaults.ts';
import { policyDomains } from './sending-domains.ts';
import {
  chooseShardCount,
  MAX_HASH_CHARS,
  passwordFingerprint,
  SPLIT_BYTES,
  shardIndex,
  shardOf,
  usernameBits,
} from './user-shards.ts';
import { evaluateUsers } from './users.ts';
import { horizontalPodAutoscaler, smtpService, statefulSet } from './workload.ts';

const meta = { name: 'mail', namespace: 'prod', uid: 'uid-1', generation: 3 };
const policy = relayPolicy(meta, { hostname: 'relay.example.net' });

describe('relay config from a RelayPolicy', () => {
  it('is valid for the relay and carries the policy defaults', () => {
    const config = buildRelayConfig(policy);
    assert.equal(config.limits.maxRecipients, 30);
    assert.equal(config.limits.maxMessageBytes, 30 * 1024 * 1024);
    assert.deepEqual(
      config.listeners.map((l) => [l.name, l.port, l.tls]),
      [
        ['submission', 587, 'starttls'],
        ['smtps', 465, 'implicit'],
        ['handoff', 10025, 'starttls'],
      ],
    );
    assert.equal(config.state.backend, 'memory');
    assert.equal(config.state.namespace, 'prod:mail');
    assert.equal(config.usersFile, '/etc/sluice/users');
    assert.equal(config.drain.handoff?.host, 'mail-relay-headless.prod.svc');
    assert.equal(config.postmaster, undefined, 'the relay defaults it to postmaster@<hostname>');
  });

  it('passes smarthost fallback hosts on', () => {
    const p = relayPolicy(meta, {
      hostname: 'relay.example.net',
      delivery: {
        ...policy.spec.delivery,
        mode: 'smarthost',
        smarthost: {
          host: 'smtp1.example.net',
          fallbackHosts: ['smtp2.example.net'],
          port: 587,
          tls: 'starttls',
          rejectUnauthorized: true,
        },
      },
    });
    assert.deepEqual(buildRelayConfig(p).delivery.smarthost?.fallbackHosts, ['smtp2.example.net']);
  });

  it('passes the postmaster address and the spool reserve on', () => {
    const p = relayPolicy(meta, {
      hostname: 'relay.example.net',
      postmaster: 'noc@example.net',
      spool: { size: '20Gi', reserveMegabytes: 500 },
    });
    const config = buildRelayConfig(p);
    assert.equal(config.postmaster, 'noc@example.net');
    assert.equal(config.spool.reserveMegabytes, 500);
    assert.equal(buildRelayConfig(policy).spool.reserveMegabytes, undefined, 'the relay defaults it');
  });

  it('removes Bcc by default and passes spec.headers.keepBcc on', () => {
    assert.equal(buildRelayConfig(policy).headers.keepBcc, false);
    const keeping = relayPolicy(meta, { hostname: 'relay.example.net', headers: { keepBcc: true } });
    assert.equal(buildRelayConfig(keeping).headers.keepBcc, true);
  });

  it('uses Redis with a mounted password when the policy names one', () => {
    const p = relayPolicy(meta, {
      hostname: 'relay.example.net',
      redis: {
        mode: 'standalone',
        nodes: ['redis:6379'],
        commandTimeoutMs: 500,
        passwordSecretRef: { name: 'redis', key: 'pw' },
        tls: false,
        db: 0,
        onDown: 'local',
      },
    });
    const config = buildRelayConfig(p);
    assert.equal(config.state.backend, 'redis');
    assert.equal(config.state.redis?.passwordFile, '/etc/sluice/redis/password');
    const sts = statefulSet(p, 'h');
    const volume = sts.spec?.template.spec?.volumes?.find((v) => v.name === 'redis');
    assert.deepEqual(volume?.secret, { secretName: 'redis', items: [{ key: 'pw', path: 'password' }] });
  });

  it("renders the policy's shaping groups and suppression into the relay config", () => {
    const plain = buildRelayConfig(policy);
    assert.equal(plain.shaping.enabled, true, 'on by default, with the groups the relay ships');
    assert.equal(plain.shaping.groups, undefined);
    const p = relayPolicy(meta, {
      hostname: 'relay.example.net',
      shaping: {
        ...policy.spec.shaping,
        groups: [{ name: 'corp', mxSuffixes: ['.mx.corp.example'], connections: 2, messagesPerSecond: 0.5 }],
        slowdownSeconds: 600,
      },
      suppression: { enabled: true, classes: ['invalid-recipient', 'bad-domain'], ttlSeconds: 86400 },
    });
    const config = buildRelayConfig(p);
    assert.deepEqual(config.shaping.groups, [
      { name: 'corp', mxSuffixes: ['.mx.corp.example'], connections: 2, messagesPerSecond: 0.5 },
    ]);
    assert.equal(config.shaping.slowdownSeconds, 600);
    assert.deepEqual(config.suppression, {
      enabled: true,
      classes: ['invalid-recipient', 'bad-domain'],
      ttlSeconds: 86400,
    });
  });

  it('renders the DMARC pre-check with its DNS servers, and the CA file delivery trusts', () => {
    const off = buildRelayConfig(policy);
    assert.equal(off.dmarcPrecheck.action, 'off', 'off unless the policy asks');
    assert.equal(off.tls.trustedCaFile, undefined);
    const p = relayPolicy(meta, {
      hostname: 'relay.example.net',
      dmarcPrecheck: {
        action: 'reject',
        resolvers: ['10.0.0.53', '[fd00::53]:5353'],
        egressIps: ['203.0.113.7'],
        timeoutMs: 1500,
        cacheSeconds: 600,
      },
      delivery: {
        ...policy.spec.delivery,
        resolvers: ['10.0.0.53'],
        trustedCa: { configMapName: 'corp-ca', key: 'bundle.pem' },
      },
    });
    const config = buildRelayConfig(p);
    assert.deepEqual(config.dmarcPrecheck, {
      action: 'reject',
      resolvers: ['10.0.0.53', '[fd00::53]:5353'],
      egressIps: ['203.0.113.7'],
      timeoutMs: 1500,
      cacheSeconds: 600,
    });
    assert.deepEqual(config.delivery.resolvers, ['10.0.0.53']);
    assert.equal(config.tls.trustedCaFile, '/etc/sluice/trusted-ca/ca.crt');
    assert.equal('trustedCa' in config.delivery, false, 'the reference stays with the operator');
    const warn = relayPolicy(meta, {
      hostname: 'relay.example.net',
      dmarcPrecheck: { ...policy.spec.dmarcPrecheck, action: 'warn' },
    });
    assert.equal(buildRelayConfig(warn).dmarcPrecheck.action, 'warn');

    const sts = statefulSet(p, 'h');
    const volume = sts.spec?.template.spec?.volumes?.find((v) => v.name === 'trusted-ca');
    assert.deepEqual(volume?.configMap, { name: 'corp-ca', items: [{ key: 'bundle.pem', path: 'ca.crt' }] });
    const mount = sts.spec?.template.spec?.containers[0]?.volumeMounts?.find((m) => m.name === 'trusted-ca');
    assert.deepEqual(mount, { name: 'trusted-ca', mountPath: '/etc/sluice/trusted-ca', readOnly: true });
    const fromSecret = relayPolicy(meta, {
      hostname: 'relay.example.net',
      delivery: { ...policy.spec.delivery, trustedCa: { secretName: 'corp-ca', key: 'ca.crt' } },
    });
    const secretVolume = statefulSet(fromSecret, 'h').spec?.template.spec?.volumes?.find(
      (v) => v.name === 'trusted-ca',
    );
    assert.deepEqual(secretVolume?.secret, {
      secretName: 'corp-ca',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
    assert.equal(
      statefulSet(policy, 'h').spec?.template.spec?.volumes?.some((v) => v.name === 'trusted-ca'),
      false,
    );
  });

  it('changes the restart hash for listener changes only', () => {
    const base = restartHash(buildRelayConfig(policy));
    const limits = relayPolicy(meta, {
      hostname: 'relay.example.net',
      limits: { ...policy.spec.limits, maxRecipients: 5 },
    });
    assert.equal(restartHash(buildRelayConfig(limits)), base, 'a limit is reloaded in place');
    const listeners = relayPolicy(meta, {
      hostname: 'relay.example.net',
      listeners: [
        {
          name: 'submission',
          address: '::',
          port: 2587,
          tls: 'starttls',
          proxyProtocol: false,
          trustedProxies: [],
        },
      ],
    });
    assert.notEqual(restartHash(buildRelayConfig(listeners)), base, 'a listener change rolls the pods');
  });

  it('gives the relay spec.workers (1 unless set), and a change of it rolls the pods', () => {
    assert.equal(buildRelayConfig(policy).workers, 1);
    const four = relayPolicy(meta, { hostname: 'relay.example.net', workers: 4 });
    assert.equal(buildRelayConfig(four).workers, 4);
    const auto = relayPolicy(meta, { hostname: 'relay.example.net', workers: 'auto' });
    assert.equal(buildRelayConfig(auto).workers, 'auto');
    const base = restartHash(buildRelayConfig(policy));
    assert.notEqual(restartHash(buildRelayConfig(four)), base);
    assert.notEqual(restartHash(buildRelayConfig(auto)), restartHash(buildRelayConfig(four)));
  });
});

describe('users', () => {
  const user = (name: string, username: string, created: string) =>
    smtpUser(
      { name, namespace: 'prod', creationTimestamp: created },
      { username, policyRef: { name: 'mail' }, passwordSecretRef: { name: `${name}-pw` } },
    );

  it('keeps given hashes, leaves users whose hash is not ready pending, and reports users it cannot add (a shared username on both)', () => {
    const given = '$2b$10$abcdefghijklmnopqrstuu5LG1JlLDYXoKk1vBy0W3YvHqBzz2Khm';
    const result = evaluateUsers({
      users: [
        { user: user('a', 'alice', '2026-01-01T00:00:00Z'), password: 'plain secret' },
        { user: user('b', 'bob', '2026-01-02T00:00:00Z'), password: given },
        { user: user('c', 'alice', '2026-01-03T00:00:00Z'), password: 'other' },
        { user: user('d', 'dave', '2026-01-04T00:00:00Z'), password: undefined },
        { user: user('e', 'erin', '2026-01-05T00:00:00Z'), password: 'plain secret' },
      ],
      handoffPassword: 'internal',
      hashOf: (username, password) => (username === 'erin' ? undefined : { hash: password }),
    });
    assert.deepEqual(
      result.records.map((r) => r.record.username),
      ['bob', 'sluice-internal-handoff'],
    );
    assert.equal(result.records[0]?.record.passwordHash, given);
    assert.deepEqual(result.pending, ['erin']);
    assert.deepEqual(
      result.outcomes.map((o) => [o.name, o.ok, o.reason]),
      [
        ['a', false, 'DuplicateUsername'],
        ['b', true, 'Active'],
        ['c', false, 'DuplicateUsername'],
        ['d', false, 'SecretNotFound'],
      ],
      'no outcome for erin until her hash is ready; neither alice is added',
    );
    assert.match(result.outcomes[0]?.message ?? '', /username alice is also used by SmtpUser c;/);
    assert.match(result.outcomes[2]?.message ?? '', /username alice is also used by SmtpUser a;/);
  });

  it('refuses a Secret holding a broken hash instead of hashing it as a password', () => {
    // bcrypt cost 99 and an scrypt salt of 4 bytes: the right shape, parameters the relay refuses
    const built = evaluateUsers({
      users: [
        {
          user: user('a', 'alice', '2026-01-01T00:00:00Z'),
          password: '$2b$99$gCDE0OjZBnNGGZs4MN7Yf.Xv3KDnKact7IJjxMzHLi.GP21dQDgha',
        },
        {
          user: user('b', 'bob', '2026-01-02T00:00:00Z'),
          password: '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA',
        },
      ],
      handoffPassword: 'internal',
      hashOf: (_username, password) => ({ hash: password }),
    });
    assert.deepEqual(
      built.outcomes.map((o) => [o.name, o.ok, o.reason, o.message]),
      [
        [
          'a',
          false,
          'InvalidPasswordHash',
          'Secret a-pw key password holds a password hash the relay cannot use (bcrypt hash must look like $2b$<cost 04-31>$<53 characters of salt and hash>); fix the hash or put the plain password there',
        ],
        [
          'b',
          false,
          'InvalidPasswordHash',
          'Secret b-pw key password holds a password hash the relay cannot use (scrypt salt must be 8 to 64 bytes, not 4); fix the hash or put the plain password there',
        ],
      ],
    );
    assert.deepEqual(
      built.records.map((r) => r.record.username),
      ['sluice-internal-handoff'],
    );
  });
});

describe('users shards', () => {
  it('puts a user in the same shard every time and splits each shard in two when the count doubles', () => {
    for (const name of ['alice', 'bob', 'user-4711@example.com']) {
      const at8 = shardIndex(name, 8);
      assert.equal(shardIndex(name, 8), at8);
      assert.equal(Math.floor(shardIndex(name, 16) / 2), at8);
    }
    assert.equal(shardIndex('anyone', 1), 0);
    assert.equal(shardOf(usernameBits('alice'), 8), shardIndex('alice', 8));
  });

  it('chooses about 1000 users a shard, keeps a live count within a factor of two, and splits big shards', () => {
    const users = (n: number, bytes = 250) =>
      Array.from({ length: n }, (_, i) => ({ username: `user${i}`, bits: usernameBits(`user${i}`), bytes }));
    assert.equal(chooseShardCount(users(10), 0), 1);
    assert.equal(chooseShardCount(users(100_000), 0), 128);
    assert.equal(chooseShardCount(users(100_000), 64), 64, 'within a factor of two: kept');
    assert.equal(chooseShardCount(users(100_000), 16), 128, 'far off: chosen again');
    // the worst case the CRD admits: 100 senders of 320 characters
    const worst = JSON.stringify({
      username: 'u'.repeat(256),
      passwordHash: 'x'.repeat(MAX_HASH_CHARS),
      suspended: false,
      allowedSenders: Array.from({ length: 100 }, () => 's'.repeat(320)),
      rateLimits: Array.from({ length: 10 }, () => ({
        what: 'recipients',
        limit: 100_000_000,
        windowSeconds: 2_592_000,
      })),
    }).length;
    assert.ok(worst < 34_000, `worst-case user ${worst} bytes`);
    const count = chooseShardCount(users(2000, worst), 0);
    const sizes = new Map<number, number>();
    for (const u of users(2000, worst))
      sizes.set(shardIndex(u.username, count), (sizes.get(shardIndex(u.username, count)) ?? 0) + u.bytes);
    assert.ok(Math.max(...sizes.values()) <= SPLIT_BYTES, 'every shard under the split size');
  });

  it('fingerprints a password under the policy key, never as the password', () => {
    const fp = passwordFingerprint('key-1', 'alice', 'secret');
    assert.equal(fp, passwordFingerprint('key-1', 'alice', 'secret'));
    assert.notEqual(
      fp,
      passwordFingerprint('key-2', 'alice', 'secret'),
      'another policy, another fingerprint',
    );
    assert.notEqual(fp, passwordFingerprint('key-1', 'bob', 'secret'), 'same password, other user');
    assert.notEqual(fp, passwordFingerprint('key-1', 'alice', 'secret2'));
    assert.equal(fp.length, 22);
  });
});

describe('workload', () => {
  it('runs non-root on a read-only root filesystem with a spool volume per pod', () => {
    const sts = statefulSet(policy, 'abc');
    const pod = sts.spec?.template.spec;
    const container = pod?.containers[0];
    assert.equal(sts.spec?.replicas, 2);
    assert.equal(pod?.securityContext?.runAsNonRoot, true);
    assert.equal(pod?.securityContext?.runAsUser, 10001);
    assert.equal(pod?.automountServiceAccountToken, false, 'no API token: the relays never call the API');
    assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(sts.spec?.template.metadata?.annotations?.['sluice.dev/config-hash'], 'abc');
    assert.equal(sts.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage, '10Gi');
    assert.deepEqual(sts.metadata?.ownerReferences?.[0]?.uid, 'uid-1');
    assert.equal(
      container?.env?.some((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT'),
      false,
    );
  });

  it('passes the OTLP endpoint to the relay pods when the policy sets one', () => {
    const traced = relayPolicy(meta, {
      hostname: 'relay.example.net',
      tracing: { otlpEndpoint: 'http://otel:4318' },
    });
    const env = statefulSet(traced, 'h').spec?.template.spec?.containers[0]?.env ?? [];
    assert.equal(env.find((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')?.value, 'http://otel:4318');
    // the kubelet expands $(VAR) from the variables defined before: the k8s.* attributes
    const fromApi: Record<string, string> = {
      'metadata.name': 'mail-relay-1',
      'metadata.namespace': 'prod',
      'spec.nodeName': 'node-a',
    };
    const expanded: Record<string, string> = {};
    for (const e of env) {
      const value = e.valueFrom?.fieldRef ? fromApi[e.valueFrom.fieldRef.fieldPath] : e.value;
      expanded[e.name] = (value ?? '').replace(/\$\((\w+)\)/g, (_m, name: string) => expanded[name] ?? '');
    }
    assert.deepEqual(tracingOptionsFromEnv(expanded, 'x').resourceAttributes, {
      'k8s.pod.name': 'mail-relay-1',
      'k8s.namespace.name': 'prod',
      'k8s.node.name': 'node-a',
      'k8s.statefulset.name': 'mail-relay',
    });
  });

  it('leaves replicas to the HPA when autoscaling is on, and keeps client IPs on the Service', () => {
    const auto = relayPolicy(meta, {
      hostname: 'relay.example.net',
      autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 9, targetCPUUtilizationPercentage: 60 },
    });
    assert.equal(statefulSet(auto, 'h').spec?.replicas, undefined);
    assert.equal(horizontalPodAutoscaler(auto)?.spec?.maxReplicas, 9);
    assert.equal(horizontalPodAutoscaler(policy), undefined);
    assert.equal(smtpService(policy).spec?.externalTrafficPolicy, 'Local');
    assert.equal(smtpService(policy).spec?.type, 'LoadBalancer');
  });
});

describe('network exposure', () => {
  const settings = {
    operatorNamespace: 'sluice-system',
    operatorPodLabels: { 'app.kubernetes.io/name': 'sluice', 'app.kubernetes.io/instance': 'sluice' },
    monitoringNamespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
  };

  it('hands the queue over on an internal listener without PROXY, not through the load balancer', () => {
    const p = relayPolicy(meta, {
      ...policy.spec,
      listeners: [
        {
          name: 'submission',
          port: 587,
          tls: 'starttls',
          proxyProtocol: true,
          trustedProxies: ['10.0.0.0/8'],
        },
      ],
    } as never);
    const config = buildRelayConfig(p);
    const handoff = config.listeners.find((l) => l.name === 'handoff');
    assert.deepEqual(
      [handoff?.port, handoff?.tls, handoff?.proxyProtocol, handoff?.trustedProxies],
      [10025, 'starttls', false, []],
    );
    assert.deepEqual(
      [config.drain.handoff?.host, config.drain.handoff?.port],
      ['mail-relay-headless.prod.svc', 10025],
    );
    assert.equal(config.listeners.find((l) => l.name === 'submission')?.proxyProtocol, true);
  });

  it('accepts the handoff account only from the pod network (the private ranges unless told)', () => {
    assert.deepEqual(buildRelayConfig(policy).drain.handoff?.fromNetworks, [
      '10.0.0.0/8',
      '172.16.0.0/12',
      '192.168.0.0/16',
      'fc00::/7',
    ]);
    const podNetworks = networkSettingsFromEnv({
      POD_NETWORKS: '10.244.0.0/16, fd00:10:244::/56',
    }).podNetworks;
    assert.deepEqual(buildRelayConfig(policy, { podNetworks }).drain.handoff?.fromNetworks, [
      '10.244.0.0/16',
      'fd00:10:244::/56',
    ]);
    assert.throws(() => buildRelayConfig(policy, { podNetworks: ['10.0.0.0/33'] }), /fromNetworks\[0\]/);
  });

  it('opens SMTP to everyone, the hand-off port to the relays and the admin port only to the operator and the monitoring namespaces', () => {
    const np = relayNetworkPolicy(policy, settings) as {
      metadata: { name: string; namespace: string; ownerReferences: Array<{ uid: string }> };
      spec: {
        podSelector: unknown;
        policyTypes: string[];
        ingress: Array<{ from?: unknown[]; ports: unknown[] }>;
      };
    };
    assert.equal(np.metadata.name, 'mail-relay');
    assert.equal(np.metadata.namespace, 'prod');
    assert.equal(np.metadata.ownerReferences[0]?.uid, 'uid-1');
    assert.deepEqual(np.spec.podSelector, {
      matchLabels: statefulSet(policy, 'h').spec?.selector?.matchLabels,
    });
    assert.deepEqual(np.spec.policyTypes, ['Ingress']);
    assert.deepEqual(np.spec.ingress, [
      {
        ports: [
          { protocol: 'TCP', port: 587 },
          { protocol: 'TCP', port: 465 },
        ],
      },
      // the drain hand-off, from the policy's own relay pods only
      {
        from: [{ podSelector: { matchLabels: statefulSet(policy, 'h').spec?.selector?.matchLabels } }],
        ports: [{ protocol: 'TCP', port: 10025 }],
      },
      {
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'sluice-system' } },
            podSelector: { matchLabels: settings.operatorPodLabels },
          },
          { namespaceSelector: settings.monitoringNamespaceSelector },
        ],
        ports: [{ protocol: 'TCP', port: 9587 }],
      },
    ]);
  });

  it('reads the relay defaults from the environment, and names a malformed variable and field', () => {
    assert.deepEqual(relayDefaultsFromEnv({}), DEFAULT_RELAY_DEFAULTS);
    assert.equal(relayDefaultsFromEnv({ RELAY_RUN_AS_USER: 'platform' }).runAsUser, undefined);
    assert.throws(
      () => relayDefaultsFromEnv({ RELAY_RUN_AS_USER: '0' }),
      /RELAY_RUN_AS_USER: "0" is neither a non-root UID nor "platform"/,
    );
    assert.throws(
      () => relayDefaultsFromEnv({ RELAY_SERVICE_MONITOR: '{"interval":"soon"}' }),
      /RELAY_SERVICE_MONITOR\.interval: "soon" is not a Prometheus duration/,
    );
    assert.throws(
      () => relayDefaultsFromEnv({ RELAY_SERVICE_MONITOR: '{"labels":{"release":1}}' }),
      /RELAY_SERVICE_MONITOR\.labels\.release: 1 is not a label value/,
    );
    assert.throws(
      () => relayDefaultsFromEnv({ RELAY_SERVICE_MONITOR: '{' }),
      /RELAY_SERVICE_MONITOR is not JSON/,
    );
  });

  it('opens the admin port to the addresses it is given (the API servers, for kubectl sluice)', () => {
    const np = relayNetworkPolicy(policy, { ...settings, adminFromCidrs: ['172.20.0.1/32'] }) as {
      spec: { ingress: Array<{ from?: unknown[]; ports: Array<{ port: number }> }> };
    };
    const admin = np.spec.ingress.find((r) => r.ports.some((p) => p.port === 9587));
    assert.deepEqual(admin?.from?.at(-1), { ipBlock: { cidr: '172.20.0.1/32' } });
    assert.throws(
      () =>
        networkSettingsFromEnv({
          RELAY_NETWORK_POLICY: JSON.stringify({ ...settings, adminFromCidrs: ['apiserver'] }),
        }),
      /RELAY_NETWORK_POLICY\.adminFromCidrs must be a list of CIDRs \(e\.g\. "172\.20\.0\.1\/32"\), not \["apiserver"\]/,
    );
  });

  it('reads its settings from the environment, and names a malformed variable', () => {
    assert.deepEqual(networkSettingsFromEnv({}), {
      podNetworks: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
    });
    assert.deepEqual(
      networkSettingsFromEnv({ RELAY_NETWORK_POLICY: JSON.stringify(settings) }).relayNetworkPolicy,
      settings,
    );
    assert.throws(
      () => networkSettingsFromEnv({ RELAY_NETWORK_POLICY: '{' }),
      /RELAY_NETWORK_POLICY is not JSON/,
    );
    assert.throws(
      () => networkSettingsFromEnv({ RELAY_NETWORK_POLICY: '{"operatorNamespace":"x"}' }),
      /RELAY_NETWORK_POLICY must hold operatorNamespace, operatorPodLabels and monitoringNamespaceSelector/,
    );
  });
});

describe('DKIM keys reach the relays through the key shards, not the pod template', () => {
  const pem = (n: number) =>
    `-----BEGIN PRIVATE KEY-----\n${'A'.repeat(1600)}${n}\n-----END PRIVATE KEY-----\n`;
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  function domain(name: string, fqdn: string, keys: Array<[string, 'Pending' | 'Active', boolean]>) {
    const d = {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'SendingDomain',
      metadata: { name, namespace: 'prod', uid: `uid-${name}`, creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { domain: fqdn, policyRef: { name: 'mail' } },
      status: {
        keys: keys.map(([selector, state, published]) => ({
          selector,
          state,
          published,
          algorithms: ['rsa-sha256'],
          secretName: `${name}-dkim-${selector}`,
          createdAt: '2026-01-01T00:00:00Z',
        })),
      },
    } as unknown as SendingDomain;
    const secrets = keys.map(([selector], i) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: `${name}-dkim-${selector}`,
        namespace: 'prod',
        labels: { [DKIM_KEY_LABEL]: DKIM_KEY_LABEL_VALUE },
        ownerReferences: [
          { apiVersion: 'sluice.dev/v1alpha1', kind: 'SendingDomain', name, uid: `uid-${name}` },
        ],
      },
      data: { 'rsa-sha256.pem': b64(pem(i)) },
    }));
    return { d, secrets };
  }

  it('names each key file after its record; the config points into the one volume of the shard set', () => {
    const a = domain('customer', 'customer.example', [
      ['sluice1', 'Active', true],
      ['sluice2', 'Pending', false],
    ]);
    const b = domain('second', 'second.example', [['sluice1', 'Pending', false]]);
    const owned = {
      list: () => [...a.secrets, ...b.secrets] as Array<KubeObject & { data?: Record<string, string> }>,
    };
    const out = policyDomains([a.d, b.d], owned, 'prod', 'mail');
    // every key of the policy's domains is copied, the pending ones too: they reach the pods before the config names them
    assert.deepEqual(
      out.files.map((f) => f.file),
      [
        'sluice1._domainkey.customer.example.rsa-sha256.pem',
        'sluice2._domainkey.customer.example.rsa-sha256.pem',
        'sluice1._domainkey.second.example.rsa-sha256.pem',
      ],
    );
    // only the active, published key signs
    assert.deepEqual(
      out.keys.map((k) => [k.domain, k.selector, k.privateKeyFile]),
      [
        [
          'customer.example',
          'sluice1',
          '/etc/sluice/config/sluice1._domainkey.customer.example.rsa-sha256.pem',
        ],
      ],
    );
    const [shard] = dkimShardData(out.files, 1);
    assert.equal(
      shard?.['sluice1._domainkey.customer.example.rsa-sha256.pem'],
      a.secrets[0]?.data['rsa-sha256.pem'],
    );

    const sts = statefulSet(policy, 'h', undefined, dkimShardSet(policy, 1));
    // the key shards share the config's volume: config.yaml and the keys it names arrive in one swap
    const volume = sts.spec?.template.spec?.volumes?.find((v) => v.name === 'config');
    assert.deepEqual(volume?.projected?.sources, [
      { configMap: { name: 'mail-relay-config' } },
      { secret: { name: 'mail-relay-dkim-1-0' } },
    ]);
    assert.deepEqual(
      sts.spec?.template.spec?.containers[0]?.volumeMounts?.find((m) => m.name === 'config'),
      { name: 'config', mountPath: '/etc/sluice/config', readOnly: true },
    );
    // the same template with no SendingDomain at all: the first one rolls nothing either
    assert.deepEqual(statefulSet(policy, 'h').spec?.template, sts.spec?.template);
  });

  it('gives a name that is no valid Secret key a hashed file name', () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(50)}.example`;
    const name = keyFileName(long, 'sluice1', 'ed25519-sha256');
    assert.match(name, /^[0-9a-f]{40}\.ed25519-sha256\.pem$/);
    assert.equal(keyFileName(long, 'sluice1', 'ed25519-sha256'), name, 'stable');
  });

  it('sizes the set by key bytes, keeps a domain in one shard, and keeps the count while it fits', () => {
    const files = (n: number): DkimKeyFile[] =>
      Array.from({ length: n }, (_, i) => [
        { domain: `d${i}.example`, file: `s._domainkey.d${i}.example.rsa-sha256.pem`, data: b64(pem(i)) },
        {
          domain: `d${i}.example`,
          file: `s._domainkey.d${i}.example.ed25519-sha256.pem`,
          data: b64('x'.repeat(120)),
        },
      ]).flat();
    assert.equal(chooseDkimShardCount([], 0), 1, 'one shard exists before any key');
    assert.equal(chooseDkimShardCount(files(100), 1), 1);
    const thousands = files(5000);
    const count = chooseDkimShardCount(thousands, 0);
    assert.equal(count, 64);
    const data = dkimShardData(thousands, count);
    const largest = Math.max(
      ...data.map((d) => Object.values(d).reduce((n, v) => n + (v.length * 3) / 4, 0)),
    );
    assert.ok(largest < SPLIT_BYTES, `largest shard ${largest} bytes`);
    for (let i = 0; i < 50; i++) {
      const holding = data.filter((d) =>
        Object.keys(d).some((k) => k.endsWith(`.d${i}.example.rsa-sha256.pem`)),
      );
      assert.equal(holding.length, 1);
      assert.ok(Object.keys(holding[0] ?? {}).includes(`s._domainkey.d${i}.example.ed25519-sha256.pem`));
    }
    // one more domain, or a few hundred fewer, keep the set (and so the mounts) as they are
    assert.equal(chooseDkimShardCount(files(5001), count), count);
    assert.equal(chooseDkimShardCount(files(4000), count), count);
  });
});
