import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tracingOptionsFromEnv } from '@sluice/relay/tracing';
import { relayPolicy, smtpUser } from '../api/defaults.ts';
import { networkSettingsFromEnv, relayNetworkPolicy } from './network-policy.ts';
import { buildRelayConfig, restartHash } from './relay-config.ts';
import { DEFAULT_RELAY_DEFAULTS, relayDefaultsFromEnv } from './relay-defaults.ts';
import {
  chooseShardCount,
  MAX_HASH_CHARS,
  passwordFingerprint,
  SPLIT_BYTES,
  shardIndex,
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
  });

  it('chooses about 1000 users a shard, keeps a live count within a factor of two, and splits big shards', () => {
    const users = (n: number, bytes = 250) =>
      Array.from({ length: n }, (_, i) => ({ username: `user${i}`, bytes }));
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
