// Entry point of the operator: the only place that reads process.env and signals.
//
//   KUBECONFIG          kubeconfig file; in-cluster service account when unset
//   WATCH_NAMESPACE     watch these namespaces (comma-separated); all namespaces when unset
//   POD_NAME            identity in the leader-election Lease (hostname when unset)
//   LEASE_NAMESPACE     namespace of the Lease (POD_NAMESPACE, WATCH_NAMESPACE or default)
//   LEASE_NAME          name of the Lease (sluice-operator)
//   LEADER_ELECT        "false" runs without leader election (a single replica)
//   ADMIN_PORT          /healthz, /readyz and /metrics (8080)
//   ADMIN_HOST          address the admin server binds (:: — every interface, IPv4 and IPv6)
//   POD_NETWORKS        comma-separated CIDRs of the pod network: the only place relays
//                       accept the handoff account from (the private ranges)
//   RELAY_NETWORK_POLICY  JSON {operatorNamespace, operatorPodLabels, monitoringNamespaceSelector}:
//                       a NetworkPolicy per RelayPolicy for its pods (none when unset)
//   RELAY_IMAGE         the image of policies without spec.image (the relay of this release)
//   RELAY_IMAGE_PULL_SECRETS  comma-separated Secrets (in each policy's namespace) to pull it with
//   RELAY_SERVICE_MONITOR  JSON {labels, interval, scrapeTimeout} of the relays' ServiceMonitors
//   RELAY_RUN_AS_USER   UID of the relay pods (10001); "platform" leaves it to the platform (OpenShift)
//   WORKERS             parallel reconciles (2)
//   LOG_LEVEL           log level (info); lines in the relay's format (@sluice/relay/logger)
//   USAGE_INTERVAL_SECONDS  how often each policy's relays are asked for usage and abuse
//                       (GET /usage, /abuse on the admin Service) for SmtpUser status (300; 0: never)
//   USAGE_WRITES_PER_SECOND  the usage write budget: SmtpUser status patches a second for
//                       usage alone, spread evenly, oldest first (20)
//   HASH_WORKERS        plain passwords hashed (scrypt) at once, across all policies (2)
//   OTEL_EXPORTER_OTLP_ENDPOINT   export reconcile spans over OTLP/HTTP; unset, no SDK is loaded
//   OTEL_SERVICE_NAME   service name of the spans (sluice-operator)
//   OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_SDK_DISABLED  as the OpenTelemetry
//                       specification defines them (the chart sets k8s.* attributes)

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createLogger } from '@sluice/relay/logger';
import { startTracing, tracingOptionsFromEnv } from '@sluice/telemetry/tracing';
import { networkSettingsFromEnv } from './build/network-policy.ts';
import { relayDefaultsFromEnv } from './build/relay-defaults.ts';
import { Controller } from './controller/controller.ts';
import { KubeClient, loadKubeConfig } from './kube/client.ts';
import { parseNamespaces } from './kube/informer-set.ts';
import { RelayAdminQueueSource } from './reconcile/deletion.ts';
import { resolverLookup } from './reconcile/dns-checks.ts';
import { startAdminServer } from './server/admin.ts';
import { OperatorMetrics } from './server/metrics.ts';
import { RelayAdminUsageSource } from './usage/relay-usage.ts';
import { OPERATOR_VERSION } from './version.ts';

const SHUTDOWN_DEADLINE_MS = 20_000;

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return value;
}

async function main(): Promise<void> {
  const env = process.env;
  // the relay's log format: level names, ISO times, trace_id/span_id inside a reconcile
  const log = createLogger({ level: env.LOG_LEVEL ?? 'info', service: 'sluice-operator' });
  const tracing = await startTracing({
    ...tracingOptionsFromEnv(env, 'sluice-operator'),
    serviceVersion: OPERATOR_VERSION,
  });
  const identity = env.POD_NAME || `${hostname()}-${randomBytes(3).toString('hex')}`;
  const watchNamespaces = parseNamespaces(env.WATCH_NAMESPACE);
  const metrics = new OperatorMetrics({ processMetrics: true });
  const kubeConfig = loadKubeConfig(env.KUBECONFIG || undefined);
  const client = new KubeClient(kubeConfig, {
    instance: identity,
    onWrite: (verb, { path }) => {
      metrics.kubeWrite(verb);
      // at debug level each write names what it wrote: why an operator at rest writes at all
      log.debug({ event: 'kube_write', verb, path }, 'write to the Kubernetes API');
    },
  });
  // Lease renewals go through their own client: the writes metric then shows reconcile
  // writes only, which are zero in steady state
  const leases = new KubeClient(kubeConfig, { instance: identity });
  const usageIntervalSeconds = intFromEnv('USAGE_INTERVAL_SECONDS', 300);
  const controller = new Controller({
    client,
    ...(watchNamespaces.length > 0 ? { namespaces: watchNamespaces } : {}),
    workers: Math.max(1, intFromEnv('WORKERS', 2)),
    network: networkSettingsFromEnv(env),
    relayDefaults: relayDefaultsFromEnv(env),
    usageWritesPerSecond: Math.max(1, intFromEnv('USAGE_WRITES_PER_SECOND', 20)),
    hashConcurrency: Math.max(1, intFromEnv('HASH_WORKERS', 2)),
    queueSource: new RelayAdminQueueSource(),
    // SendingDomains' DNS: the system's resolvers unless DNS_SERVERS (host:port,...) names others
    dns: resolverLookup(
      (env.DNS_SERVERS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
    dnsCheckIntervalMs: Math.max(1, intFromEnv('DNS_CHECK_INTERVAL_SECONDS', 300)) * 1000,
    log,
    metrics,
    ...(usageIntervalSeconds > 0
      ? { usageSource: new RelayAdminUsageSource(), usageIntervalMs: usageIntervalSeconds * 1000 }
      : {}),
    ...(env.LEADER_ELECT === 'false'
      ? {}
      : {
          leaderElection: {
            leases,
            namespace: env.LEASE_NAMESPACE || env.POD_NAMESPACE || watchNamespaces[0] || 'default',
            name: env.LEASE_NAME || 'sluice-operator',
            identity,
          },
        }),
  });
  metrics.bindQueueDepth(() => controller.queueDepth);
  const admin = await startAdminServer({
    ...(env.ADMIN_HOST ? { host: env.ADMIN_HOST } : {}),
    port: intFromEnv('ADMIN_PORT', 8080),
    registry: metrics.registry,
    readiness: () => controller.readiness(),
  });
  log.info(
    { identity, namespaces: watchNamespaces.length > 0 ? watchNamespaces : '(all)', adminPort: admin.port },
    'operator started',
  );
  controller.start();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: finishing reconciles, releasing the lease');
    const deadline = setTimeout(() => {
      log.error({}, 'shutdown deadline passed');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    controller
      .stop()
      .then(() => admin.close())
      .then(() => tracing.shutdown())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`sluice-operator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
