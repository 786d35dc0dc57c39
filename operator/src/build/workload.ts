// RelayPolicy → the Kubernetes objects that run it: StatefulSet (a spool volume per
// pod), Services, PodDisruptionBudget, HorizontalPodAutoscaler, ServiceMonitor. Pure:
// the same policy always gives the same objects, so server-side apply is a no-op when
// nothing changed.
import type {
  V1ConfigMap,
  V1PodDisruptionBudget,
  V1ResourceRequirements,
  V1Secret,
  V1Service,
  V1StatefulSet,
  V1TopologySpreadConstraint,
  V1Volume,
  V1VolumeMount,
  V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import { SessionGraceSchema } from '@sluice/relay/config-schema';
import type { RelayPolicy } from '../api/types.ts';
import { DKIM_DIR } from './dkim-keys.ts';
import { ADMIN_PORT, HANDOFF_LISTENER, HANDOFF_PORT, labels, names, PATHS, selector } from './names.ts';
import {
  DEFAULT_RELAY_DEFAULTS,
  type RelayDefaults,
  relayImageOf,
  type ServiceMonitorSettings,
} from './relay-defaults.ts';
import type { DkimMount } from './sending-domains.ts';
import { SHARD_USERS_KEY, shardFile, shardName } from './user-shards.ts';

export const CONFIG_HASH_ANNOTATION = 'sluice.dev/config-hash';

/**
 * The pod's k8s.* resource attributes (OpenTelemetry semantic conventions) for its spans,
 * through OTEL_RESOURCE_ATTRIBUTES; the kubelet expands $(VAR) from the variables before.
 */
export function k8sResourceEnv(workload: string) {
  return [
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
    {
      name: 'OTEL_RESOURCE_ATTRIBUTES',
      value: `k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),${workload}`,
    },
  ];
}

/** Quantities as the pod spec writes them: `cpu: 1` becomes "1". */
function quantities(values: Record<string, string | number | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(values)) if (v !== undefined) out[k] = String(v);
  return out;
}

/** Name, namespace, labels and the owner reference to the policy, for everything it owns. */
export function ownedMeta(policy: RelayPolicy, name: string) {
  return {
    name,
    namespace: policy.metadata.namespace,
    labels: labels(policy),
    ...(policy.metadata.uid
      ? {
          ownerReferences: [
            {
              apiVersion: 'sluice.dev/v1alpha1',
              kind: 'RelayPolicy',
              name: policy.metadata.name,
              uid: policy.metadata.uid,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        }
      : {}),
  };
}

export function configMap(policy: RelayPolicy, configYaml: string): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: ownedMeta(policy, names(policy).configMap),
    data: { 'config.yaml': configYaml },
  };
}

/** The key under which the internal Secret keeps the password-fingerprint key (never mounted into pods). */
export const FINGERPRINT_KEY = 'fingerprint-key';

export function internalSecret(
  policy: RelayPolicy,
  handoffPassword: string,
  adminToken: string,
  fingerprintKey: string,
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: ownedMeta(policy, names(policy).internalSecret),
    stringData: {
      'handoff-password': handoffPassword,
      'admin-token': adminToken,
      [FINGERPRINT_KEY]: fingerprintKey,
    },
  };
}

/** The users shard Secrets the pods mount, one file each in the users directory. */
export interface UsersShards {
  count: number;
  names: readonly string[];
}

export function statefulSet(
  policy: RelayPolicy,
  configHash: string,
  users: UsersShards = { count: 1, names: [shardName(names(policy).usersSecret, 1, 0)] },
  dkimKeys: readonly DkimMount[] = [],
  defaults: RelayDefaults = DEFAULT_RELAY_DEFAULTS,
): V1StatefulSet {
  const { spec } = policy;
  const n = names(policy);
  const volumes: V1Volume[] = [
    { name: 'config', configMap: { name: n.configMap } },
    {
      name: 'users',
      projected: {
        sources: users.names.map((name, i) => ({
          secret: { name, items: [{ key: SHARD_USERS_KEY, path: shardFile(users.count, i) }] },
        })),
      },
    },
    {
      name: 'internal',
      secret: {
        secretName: n.internalSecret,
        items: [
          { key: 'handoff-password', path: 'handoff-password' },
          { key: 'admin-token', path: 'admin-token' },
        ],
      },
    },
    { name: 'tmp', emptyDir: {} },
  ];
  const mounts: V1VolumeMount[] = [
    { name: 'config', mountPath: PATHS.configDir, readOnly: true },
    { name: 'users', mountPath: PATHS.usersDir, readOnly: true },
    { name: 'internal', mountPath: PATHS.internalDir, readOnly: true },
    { name: 'spool', mountPath: PATHS.spool },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  if (spec.tlsSecretName) {
    volumes.push({ name: 'tls', secret: { secretName: spec.tlsSecretName } });
    mounts.push({ name: 'tls', mountPath: PATHS.tlsDir, readOnly: true });
  }
  // the SendingDomains' key Secrets, one directory each; a key is in the config only once DNS serves it
  if (dkimKeys.length > 0) {
    volumes.push({
      name: 'dkim',
      projected: {
        sources: dkimKeys.map((m) => ({ secret: { name: m.secretName, items: m.items } })),
      },
    });
    mounts.push({ name: 'dkim', mountPath: DKIM_DIR, readOnly: true });
  }
  const redisRef = spec.redis?.passwordSecretRef;
  if (redisRef) {
    volumes.push({
      name: 'redis',
      secret: { secretName: redisRef.name, items: [{ key: redisRef.key, path: 'password' }] },
    });
    mounts.push({ name: 'redis', mountPath: '/etc/sluice/redis', readOnly: true });
  }
  const smarthostRef = spec.delivery.smarthost?.credentialsSecretRef;
  if (smarthostRef) {
    volumes.push({
      name: 'smarthost',
      secret: { secretName: smarthostRef.name, items: [{ key: smarthostRef.passwordKey, path: 'password' }] },
    });
    mounts.push({ name: 'smarthost', mountPath: '/etc/sluice/smarthost', readOnly: true });
  }
  // the HPA's CPU utilization is measured against the request: without one it cannot scale
  const requests =
    spec.autoscaling.enabled && !spec.resources.requests.cpu
      ? { ...spec.resources.requests, cpu: AUTOSCALING_CPU_REQUEST }
      : spec.resources.requests;
  const resources: V1ResourceRequirements = {
    ...(Object.keys(requests).length ? { requests: quantities(requests) } : {}),
    ...(Object.keys(spec.resources.limits).length ? { limits: quantities(spec.resources.limits) } : {}),
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: ownedMeta(policy, n.statefulSet),
    spec: {
      serviceName: n.headlessService,
      // with autoscaling on, the HPA owns the replica count
      ...(spec.autoscaling.enabled ? {} : { replicas: spec.replicas }),
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: selector(policy) },
      updateStrategy: { type: 'RollingUpdate' },
      template: {
        metadata: { labels: labels(policy), annotations: { [CONFIG_HASH_ANNOTATION]: configHash } },
        spec: {
          terminationGracePeriodSeconds: terminationGracePeriodSeconds(policy),
          // the relays never call the Kubernetes API: no token in their pods
          automountServiceAccountToken: false,
          ...(defaults.imagePullSecrets.length > 0
            ? { imagePullSecrets: defaults.imagePullSecrets.map((name) => ({ name })) }
            : {}),
          securityContext: {
            runAsNonRoot: true,
            // left to the platform when unset (OpenShift assigns each namespace a UID range)
            ...(defaults.runAsUser === undefined
              ? {}
              : {
                  runAsUser: defaults.runAsUser,
                  runAsGroup: defaults.runAsUser,
                  fsGroup: defaults.runAsUser,
                }),
            seccompProfile: { type: 'RuntimeDefault' },
            // SMTP ports (25, 465, 587) without root or capabilities
            sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
          },
          ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
          ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
          ...(spec.affinity ? { affinity: spec.affinity } : {}),
          ...(spec.priorityClassName ? { priorityClassName: spec.priorityClassName } : {}),
          // entries are core/v1's: one the API server refuses is reported as ApplyFailed
          topologySpreadConstraints:
            (spec.topologySpreadConstraints as V1TopologySpreadConstraint[] | undefined) ??
            defaultSpread(policy),
          containers: [
            {
              name: 'relay',
              image: relayImageOf(policy, defaults),
              imagePullPolicy: spec.imagePullPolicy,
              args: ['--config', PATHS.config],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                ...(spec.tracing.otlpEndpoint
                  ? [
                      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: spec.tracing.otlpEndpoint },
                      { name: 'OTEL_SERVICE_NAME', value: 'sluice-relay' },
                      ...k8sResourceEnv(`k8s.statefulset.name=${n.statefulSet}`),
                    ]
                  : []),
              ],
              ports: [
                ...spec.listeners.map((l) => ({
                  name: l.name.slice(0, 15),
                  containerPort: l.port,
                  protocol: 'TCP',
                })),
                { name: 'admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
                { name: HANDOFF_LISTENER, containerPort: HANDOFF_PORT, protocol: 'TCP' },
              ],
              readinessProbe: {
                httpGet: { path: '/readyz', port: 'admin' },
                periodSeconds: 5,
                failureThreshold: 2,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: 'admin' },
                periodSeconds: 10,
                failureThreshold: 6,
              },
              resources,
              securityContext: {
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'spool', labels: labels(policy) },
          spec: {
            accessModes: ['ReadWriteOnce'],
            resources: { requests: { storage: spec.spool.size } },
            ...(spec.spool.storageClassName ? { storageClassName: spec.spool.storageClassName } : {}),
          },
        },
      ],
    },
  };
}

/**
 * Replicas spread across nodes and zones: one node or zone lost takes as few relays as
 * can be, yet a cluster with one node or no zone labels still schedules them all.
 */
function defaultSpread(policy: RelayPolicy): V1TopologySpreadConstraint[] {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selector(policy) },
  }));
}

/** Time for the hand-off of what the drain deadline left and for closing the rest. */
const STOP_MARGIN_SECONDS = 15;

/**
 * How long the kubelet lets a relay stop before killing it: the shutdown delay (readiness
 * off, still accepting), the open sessions' grace, the drain deadline, then the margin.
 */
export function terminationGracePeriodSeconds(policy: RelayPolicy): number {
  const { spec } = policy;
  return (
    spec.rollout.shutdownDelaySeconds +
    SessionGraceSchema.default +
    spec.drainDeadlineSeconds +
    STOP_MARGIN_SECONDS
  );
}

/** The relay container's CPU request under autoscaling when the policy sets none. */
export const AUTOSCALING_CPU_REQUEST = '100m';

export function smtpService(policy: RelayPolicy): V1Service {
  const { service } = policy.spec;
  const external = service.type !== 'ClusterIP';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      ...ownedMeta(policy, names(policy).smtpService),
      ...(service.annotations ? { annotations: service.annotations } : {}),
    },
    spec: {
      type: service.type,
      ...(external ? { externalTrafficPolicy: service.externalTrafficPolicy } : {}),
      selector: selector(policy),
      ports: policy.spec.listeners.map((l) => ({
        name: l.name.slice(0, 15),
        port: l.port,
        targetPort: l.port,
        protocol: 'TCP',
      })),
    },
  };
}

export function adminService(policy: RelayPolicy): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      ...ownedMeta(policy, names(policy).adminService),
      labels: { ...labels(policy), 'sluice.dev/metrics': 'true' },
    },
    spec: {
      type: 'ClusterIP',
      selector: selector(policy),
      ports: [{ name: 'admin', port: ADMIN_PORT, targetPort: 'admin', protocol: 'TCP' }],
    },
  };
}

export function headlessService(policy: RelayPolicy): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(policy, names(policy).headlessService),
    spec: {
      clusterIP: 'None',
      selector: selector(policy),
      ports: policy.spec.listeners.map((l) => ({
        name: l.name.slice(0, 15),
        port: l.port,
        targetPort: l.port,
        protocol: 'TCP',
      })),
    },
  };
}

export function podDisruptionBudget(policy: RelayPolicy): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMeta(policy, names(policy).pdb),
    spec: { maxUnavailable: 1, selector: { matchLabels: selector(policy) } },
  };
}

export function horizontalPodAutoscaler(policy: RelayPolicy): V2HorizontalPodAutoscaler | undefined {
  const a = policy.spec.autoscaling;
  if (!a.enabled) return undefined;
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: ownedMeta(policy, names(policy).hpa),
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: names(policy).statefulSet },
      minReplicas: a.minReplicas,
      maxReplicas: a.maxReplicas,
      metrics: [
        {
          type: 'Resource',
          resource: {
            name: 'cpu',
            target: { type: 'Utilization', averageUtilization: a.targetCPUUtilizationPercentage },
          },
        },
      ],
    },
  };
}

/**
 * The relays' ServiceMonitor: the labels the cluster's Prometheus selects, and a `policy`
 * label on every series (the dashboard's policy variable).
 */
export function serviceMonitor(
  policy: RelayPolicy,
  settings: ServiceMonitorSettings = DEFAULT_RELAY_DEFAULTS.serviceMonitor,
): Record<string, unknown> {
  const meta = ownedMeta(policy, names(policy).serviceMonitor);
  return {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata: { ...meta, labels: { ...settings.labels, ...meta.labels } },
    spec: {
      selector: { matchLabels: { ...selector(policy), 'sluice.dev/metrics': 'true' } },
      endpoints: [
        {
          port: 'admin',
          path: '/metrics',
          interval: settings.interval,
          ...(settings.scrapeTimeout ? { scrapeTimeout: settings.scrapeTimeout } : {}),
          relabelings: [
            {
              sourceLabels: ['__meta_kubernetes_service_label_app_kubernetes_io_instance'],
              targetLabel: 'policy',
            },
          ],
        },
      ],
    },
  };
}
