// The whole system for an e2e test file, the way a platform team sets it up:
//   - a real kube-apiserver and etcd (control-plane.ts);
//   - `helm install` of charts/sluice (CRDs, operator Deployment, ServiceAccount, RBAC);
//   - the operator as a process with the chart's ServiceAccount token (operator-process.ts);
//   - the kubelet stand-in that runs the relay pods (kubelet-shim.ts);
//   - a real redis-server, a DNS server on loopback (MX records and a DNSBL zone) and an
//     SMTP sink as the destination MX host;
//   - `kubectl apply` of password Secrets, a RelayPolicy and its SmtpUsers.
import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeClient, loadKubeConfig } from '@sluice/operator/kube-client';
import {
  type ControlPlane,
  type KubectlResult,
  startControlPlane,
} from '@sluice/operator/testing/control-plane';
import {
  type RedisServerHandle,
  type SmtpSink,
  startDnsServer,
  startRedisServer,
  startSmtpSink,
  type TestDnsServer,
} from '@sluice/relay/testing';
import { freePortOn } from '@sluice/relay/testing/ports';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { stringify } from 'yaml';
import { helm } from './helm.ts';
import { KubeletShim, type PodView } from './kubelet-shim.ts';
import { type OperatorProcess, startOperator } from './operator-process.ts';
import type { Endpoint } from './smtp-clients.ts';

const CHART = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'charts', 'sluice');
export const RELEASE = 'sluice';
export const RELEASE_NAMESPACE = 'sluice-system';
export const NAMESPACE = 'mail';
export const POLICY = 'relay';
export const STATEFUL_SET = `${POLICY}-relay`;
/** The DNSBL zone on the loopback DNS server; 127.0.0.66 is listed in it. */
export const DNSBL_ZONE = 'bl.sluice.test';
export const LISTED_CLIENT = '127.0.0.66';
/** Mail for this domain goes to the sink (MX mx.example.net → 127.0.0.1). */
export const DOMAIN = 'example.net';

export interface TestUser {
  /** SmtpUser and Secret name */
  name: string;
  username: string;
  password: string;
  extra?: Record<string, unknown>;
}

export interface RelayPolicyObject {
  metadata: { name: string; generation?: number };
  spec: Record<string, unknown> & { replicas?: number };
  status?: {
    observedGeneration?: number;
    readyReplicas?: number;
    replicas?: number;
    userCount?: number;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
  };
}

export interface ClusterOptions {
  users: TestUser[];
  /** Fields of the RelayPolicy spec over the defaults below (top-level keys replace). */
  spec?: Record<string, unknown>;
  /** For a test of the API alone: no operator and no shim (those fields stay unset), no resources. */
  apiOnly?: boolean;
  /** The shim writes a Pod object for each relay pod it runs (KubeletShimOptions.podObjects). */
  podObjects?: boolean;
}

export interface SluiceCluster {
  cp: ControlPlane;
  admin: KubeClient;
  dir: string;
  ports: { submission: number; smtps: number };
  redis: RedisServerHandle;
  dns: TestDnsServer;
  sink: SmtpSink;
  operator: OperatorProcess;
  shim: KubeletShim;
  /** kubectl as the admin. */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /** `kubectl apply -f -` of the objects as YAML; returns kubectl's output. */
  apply(...objects: object[]): Promise<string>;
  /** The RelayPolicy as the API server has it. */
  policy(): Promise<RelayPolicyObject>;
  /** waitFor over the RelayPolicy (default 60 s); fails after the deadline with the status, pods and operator log. */
  waitForPolicy<T>(
    what: string,
    check: (p: RelayPolicyObject) => T | undefined | false,
    options?: { timeoutMs?: number },
  ): Promise<T>;
  /** Waits for Ready=True, Progressing=False for the current generation with `replicas` ready pods. */
  waitReady(replicas: number, timeoutMs?: number): Promise<RelayPolicyObject>;
  /** The relay pods that run (not terminating), by ordinal. */
  pods(): PodView[];
  /** The pod IP of ordinal n of the relay StatefulSet (whether it runs or not). */
  podIp(ordinal: number): string;
  /** The submission endpoint of pod `ordinal`. */
  submission(ordinal: number): Endpoint;
  stop(): Promise<void>;
}

export function passwordSecret(user: TestUser): object {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `${user.name}-password`, namespace: NAMESPACE },
    type: 'Opaque',
    stringData: { password: user.password },
  };
}

export function smtpUser(user: TestUser): object {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'SmtpUser',
    metadata: { name: user.name, namespace: NAMESPACE },
    spec: {
      username: user.username,
      policyRef: { name: POLICY },
      passwordSecretRef: { name: `${user.name}-password`, key: 'password' },
      ...user.extra,
    },
  };
}

function relayPolicy(o: {
  ports: { submission: number; smtps: number };
  dns: TestDnsServer;
  sink: SmtpSink;
  redis: RedisServerHandle;
  spec?: Record<string, unknown>;
}): object {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'RelayPolicy',
    metadata: { name: POLICY, namespace: NAMESPACE },
    spec: {
      replicas: 2,
      hostname: 'relay.sluice.test',
      listeners: [
        { name: 'submission', port: o.ports.submission, tls: 'starttls' },
        { name: 'smtps', port: o.ports.smtps, tls: 'implicit' },
      ],
      service: { type: 'ClusterIP' },
      dnsbl: {
        checkAt: 'connect',
        resolvers: [o.dns.address],
        timeoutMs: 1000,
        zones: [
          { zone: DNSBL_ZONE, listedCodes: ['127.0.0.2'], message: 'Client host [{ip}] is listed in {zone}' },
        ],
      },
      delivery: {
        mode: 'direct',
        port: o.sink.port,
        resolvers: [o.dns.address],
        allowLocalAddresses: true,
        retry: { minBackoffSeconds: 1, maxBackoffSeconds: 2 },
      },
      redis: { nodes: o.redis.nodes },
      authLockout: {
        maxFailuresPerUser: 3,
        maxFailuresPerIp: 1000,
        windowSeconds: 900,
        cooldownSeconds: 900,
      },
      drainDeadlineSeconds: 2,
      ...o.spec,
    },
  };
}

/** Starts everything and applies the resources; does not wait for the policy to be Ready. */
export async function startSluiceCluster(options: ClusterOptions): Promise<SluiceCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-'));
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const cp = await startControlPlane();
    stops.push(() => cp.stop());
    const admin = new KubeClient(loadKubeConfig(cp.kubeconfigPath), { fieldManager: 'e2e-admin' });
    const kubectl = (args: string[], input?: string) =>
      cp.kubectl(args, input === undefined ? {} : { input });
    const apply = async (...objects: object[]) =>
      (await kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'))).stdout;

    // the "pods" run on loopback addresses (127.x.1.n): that is this cluster's pod network
    const install = ['install', RELEASE, CHART, '--namespace', RELEASE_NAMESPACE, '--create-namespace'];
    await helm([...install, '--set-json', 'podNetworks=["127.0.0.0/8"]'], {
      kubeconfig: cp.kubeconfigPath,
      dir,
    });
    await kubectl(['create', 'namespace', NAMESPACE]);
    // helm returns once the CRDs are created; they are served a moment later
    await waitFor(
      'the sluice.dev kinds to be served',
      () => admin.servesKinds('sluice.dev/v1alpha1', ['RelayPolicy', 'SmtpUser', 'SendingDomain']),
      { timeoutMs: 30_000 },
    );
    await waitFor(
      'kubectl to find the RelayPolicy kind',
      async () => {
        await kubectl(['get', 'relaypolicies,smtpusers', '-n', NAMESPACE]);
        return true;
      },
      { timeoutMs: 30_000 },
    );

    const redis = await startRedisServer();
    stops.push(() => redis.stop());
    const dns = await startDnsServer();
    stops.push(() => dns.close());
    const sink = await startSmtpSink();
    stops.push(() => sink.close());
    dns.setMx(DOMAIN, [{ exchange: `mx.${DOMAIN}`, priority: 10 }]);
    dns.setA(`mx.${DOMAIN}`, ['127.0.0.1']);
    dns.setA(`${LISTED_CLIENT.split('.').reverse().join('.')}.${DNSBL_ZONE}`, ['127.0.0.2']);

    // each cluster gets its own pod network, so that two test runs on one machine (which
    // both bind the relay's admin port 9587 on their pod IPs) do not collide
    const podNetwork = `127.${16 + randomInt(230)}`;
    const podIp = (ordinal: number) => `${podNetwork}.1.${ordinal + 1}`;
    const pods = [podIp(0), podIp(1), podIp(2)];
    const submission = await freePortOn(pods);
    let smtps = await freePortOn(pods);
    while (smtps === submission) smtps = await freePortOn(pods);
    const ports = { submission, smtps };

    let operator = undefined as unknown as OperatorProcess;
    let shim = undefined as unknown as KubeletShim;
    if (!options.apiOnly) {
      operator = await startOperator({
        cp,
        namespace: RELEASE_NAMESPACE,
        deployment: `${RELEASE}-operator`,
        dir,
        // SendingDomains' records are looked up on the loopback DNS server, every second
        env: { DNS_SERVERS: dns.address, DNS_CHECK_INTERVAL_SECONDS: '1' },
      });
      stops.push(() => operator.stop());
      shim = await KubeletShim.start({
        kubeconfigPath: cp.kubeconfigPath,
        namespace: NAMESPACE,
        dir: join(dir, 'node'),
        podNetwork,
        ...(options.podObjects ? { podObjects: true } : {}),
      });
      stops.push(() => shim.stop());
      await apply(
        ...options.users.map(passwordSecret),
        relayPolicy({ ports, dns, sink, redis, ...(options.spec ? { spec: options.spec } : {}) }),
        ...options.users.map(smtpUser),
      );
    }

    const policy = async () =>
      (await admin.get<RelayPolicyObject & { metadata: { name: string } }>(
        'sluice.dev/v1alpha1',
        'RelayPolicy',
        NAMESPACE,
        POLICY,
      )) as RelayPolicyObject;
    const diagnostics = async () => {
      const p = await policy().catch((err: unknown) => ({ error: String(err) }));
      return [
        `RelayPolicy: ${JSON.stringify(p, null, 1)}`,
        `pods: ${JSON.stringify(shim?.pods().map((x) => ({ name: x.name, phase: x.phase, ready: x.ready, waiting: x.waiting, pid: x.pid })))}`,
        `shim errors: ${shim?.errors.slice(-5).join('\n')}`,
        `operator log:\n${operator?.tail(15)}`,
      ].join('\n');
    };
    const waitForPolicy = <T>(
      what: string,
      check: (p: RelayPolicyObject) => T | undefined | false,
      { timeoutMs = 60_000 }: { timeoutMs?: number } = {},
    ) => waitFor(what, async () => check(await policy()), { timeoutMs, detail: diagnostics });

    return {
      cp,
      admin,
      dir,
      ports,
      redis,
      dns,
      sink,
      operator,
      shim,
      kubectl,
      apply,
      policy,
      waitForPolicy,
      waitReady: (replicas, timeoutMs = 90_000) =>
        waitForPolicy(
          `RelayPolicy ${POLICY} Ready with ${replicas} pods`,
          (p) => {
            const s = p.status;
            const cond = (type: string) => s?.conditions?.find((c) => c.type === type)?.status;
            const pods = shim.pods();
            return (
              s?.observedGeneration === p.metadata.generation &&
              cond('Ready') === 'True' &&
              cond('Progressing') === 'False' &&
              s?.readyReplicas === replicas &&
              pods.length === replicas &&
              pods.every((x) => x.phase === 'Running' && x.ready) &&
              p
            );
          },
          { timeoutMs },
        ),
      pods: () => shim.pods(STATEFUL_SET).filter((p) => p.phase !== 'Terminating'),
      podIp,
      submission: (ordinal) => ({ host: podIp(ordinal), port: ports.submission }),
      stop: stopAll,
    };
  } catch (err: unknown) {
    await stopAll();
    throw err;
  }
}
