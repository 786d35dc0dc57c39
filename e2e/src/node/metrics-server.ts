// Resource metrics as a cluster serves them: metrics-server (built from its Go module by
// e2e/node/build.sh) in a minimal image of its own, a Deployment in kube-system under its
// own ServiceAccount and RBAC, registered with the API server's aggregation layer as the
// v1beta1.metrics.k8s.io APIService. The HPA controller reads pod CPU through it.
//
// Unlike a production install: the kubelet's serving certificate is self-signed (no
// serving-certificate bootstrap here), so metrics-server scrapes it with
// --kubelet-insecure-tls; and the APIService skips TLS verification of metrics-server's
// own self-signed certificate (insecureSkipTLSVerify), as metrics-server's quick-start
// manifest does.
import type { NodeCluster } from './cluster.ts';

export const METRICS_SERVER_IMAGE = 'sluice.test/metrics-server:0.8.0';
/** How often metrics-server scrapes the kubelet (its minimum is 10 s; longer than the kubelet request timeout). */
const RESOLUTION = '10s';
const KUBELET_TIMEOUT = '5s';

/** The objects of metrics-server (RBAC, Deployment, Service, APIService) as a kubectl list. */
export function metricsServerManifest(): string {
  const labels = { 'k8s-app': 'metrics-server' };
  const metadata = (name: string, namespaced = true) => ({
    name,
    ...(namespaced ? { namespace: 'kube-system' } : {}),
    labels,
  });
  const subjects = [{ kind: 'ServiceAccount', name: 'metrics-server', namespace: 'kube-system' }];
  const items = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata('metrics-server') },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: metadata('system:metrics-server', false),
      rules: [
        { apiGroups: [''], resources: ['nodes/metrics'], verbs: ['get'] },
        { apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: {
        ...metadata('system:aggregated-metrics-reader', false),
        labels: {
          ...labels,
          'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
          'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
          'rbac.authorization.k8s.io/aggregate-to-view': 'true',
        },
      },
      rules: [
        { apiGroups: ['metrics.k8s.io'], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: metadata('system:metrics-server', false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:metrics-server' },
      subjects,
    },
    {
      // delegated authentication and authorization of the requests the API server proxies
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: metadata('metrics-server:system:auth-delegator', false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
      subjects,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: metadata('metrics-server-auth-reader'),
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Role',
        name: 'extension-apiserver-authentication-reader',
      },
      subjects,
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: metadata('metrics-server'),
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'metrics-server',
            priorityClassName: 'system-cluster-critical',
            securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'metrics-server',
                image: METRICS_SERVER_IMAGE,
                imagePullPolicy: 'Never',
                args: [
                  '--cert-dir=/tmp',
                  '--secure-port=10250',
                  '--kubelet-preferred-address-types=InternalIP',
                  '--kubelet-use-node-status-port',
                  '--kubelet-insecure-tls',
                  `--metric-resolution=${RESOLUTION}`,
                  `--kubelet-request-timeout=${KUBELET_TIMEOUT}`,
                ],
                ports: [{ name: 'https', containerPort: 10250, protocol: 'TCP' }],
                // patient probes: on a loaded machine (the HPA scenario's load) a 1 s
                // probe timeout took the pod out of its Service, and the metrics API
                // answered 503 to the HPA
                readinessProbe: {
                  httpGet: { path: '/readyz', port: 'https', scheme: 'HTTPS' },
                  periodSeconds: 2,
                  timeoutSeconds: 5,
                  failureThreshold: 10,
                },
                livenessProbe: {
                  httpGet: { path: '/livez', port: 'https', scheme: 'HTTPS' },
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                  failureThreshold: 6,
                },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  runAsNonRoot: true,
                  runAsUser: 1000,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
              },
            ],
            volumes: [{ name: 'tmp', emptyDir: {} }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata('metrics-server'),
      spec: { selector: labels, ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 'https' }] },
    },
    {
      apiVersion: 'apiregistration.k8s.io/v1',
      kind: 'APIService',
      metadata: metadata('v1beta1.metrics.k8s.io', false),
      spec: {
        service: { name: 'metrics-server', namespace: 'kube-system' },
        group: 'metrics.k8s.io',
        version: 'v1beta1',
        insecureSkipTLSVerify: true,
        groupPriorityMinimum: 100,
        versionPriority: 100,
      },
    },
  ];
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/**
 * Builds the metrics-server image, applies it and waits until the APIService is
 * Available (until then discovery of metrics.k8s.io fails for every client).
 */
export async function deployMetricsServer(cluster: NodeCluster): Promise<void> {
  await cluster.loadImage({
    ref: METRICS_SERVER_IMAGE,
    layers: [{ source: cluster.bins['metrics-server'], target: '/metrics-server' }],
    entrypoint: ['/metrics-server'],
    user: '1000:1000',
  });
  await cluster.cp.kubectl(['apply', '-f', '-'], { input: metricsServerManifest() });
  try {
    await cluster.cp.kubectl([
      'wait',
      '-n',
      'kube-system',
      '--for=condition=Available',
      'deployment/metrics-server',
      '--timeout=120s',
    ]);
    await cluster.cp.kubectl([
      'wait',
      '--for=condition=Available',
      'apiservice/v1beta1.metrics.k8s.io',
      '--timeout=60s',
    ]);
  } catch (err: unknown) {
    const show = async (args: string[]) =>
      (await cluster.cp.kubectl(args).catch((e: unknown) => ({ stdout: String(e) }))).stdout;
    throw new Error(
      `metrics-server not available: ${(err as Error).message}\n${await show([
        'describe',
        'pods',
        '-n',
        'kube-system',
        '-l',
        'k8s-app=metrics-server',
      ])}\n${await show(['logs', '-n', 'kube-system', 'deployment/metrics-server', '--tail=40'])}\n${await show(
        ['get', 'apiservice', 'v1beta1.metrics.k8s.io', '-o', 'yaml'],
      )}`,
    );
  }
}
