// Cluster DNS as a cluster runs it: CoreDNS (built from its Go module by
// e2e/node/build.sh) in a minimal image of its own, a Deployment in kube-system under
// its own ServiceAccount and RBAC, behind the kube-dns Service at the ClusterIP the
// kubelet hands to pods. Extra zones (e.g. MX records for test domains) come in as
// zone files in the Corefile's ConfigMap.
import type { NodeCluster } from './cluster.ts';

export const COREDNS_IMAGE = 'sluice.test/coredns:1.15.0';

export interface ClusterDnsOptions {
  /** Zone name -> RFC 1035 zone file text, served authoritatively besides cluster.local. */
  zones?: Record<string, string>;
}

function corefile(zones: Record<string, string>): string {
  const extra = Object.keys(zones)
    .map((zone) => `${zone}:53 {\n    errors\n    file /etc/coredns/${zone}.zone\n    reload 2s\n}\n`)
    .join('');
  return `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    reload 2s
}
${extra}`;
}

/** The objects of cluster DNS (RBAC, ConfigMap, Deployment, Service) as a kubectl list. */
export function clusterDnsManifest(dnsIp: string, options: ClusterDnsOptions = {}): string {
  const zones = options.zones ?? {};
  const labels = { 'k8s-app': 'kube-dns' };
  const data: Record<string, string> = { Corefile: corefile(zones) };
  for (const [zone, text] of Object.entries(zones)) data[`${zone}.zone`] = text;
  const items = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        {
          apiGroups: [''],
          resources: ['endpoints', 'services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: 'kube-system', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            dnsPolicy: 'Default',
            priorityClassName: 'system-cluster-critical',
            securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'coredns',
                image: COREDNS_IMAGE,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
                ports: [
                  { name: 'dns', containerPort: 53, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                ],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
                },
                livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 5 },
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 1 },
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels },
      spec: {
        clusterIP: dnsIp,
        selector: labels,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    },
  ];
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/** Builds the CoreDNS image, applies cluster DNS and waits until it is available. */
export async function deployClusterDns(cluster: NodeCluster, options: ClusterDnsOptions = {}): Promise<void> {
  await cluster.loadImage({
    ref: COREDNS_IMAGE,
    layers: [{ source: cluster.bins.coredns, target: '/coredns' }],
    entrypoint: ['/coredns'],
  });
  await cluster.cp.kubectl(['apply', '-f', '-'], { input: clusterDnsManifest(cluster.dnsIp, options) });
  await cluster.cp.kubectl([
    'wait',
    '-n',
    'kube-system',
    '--for=condition=Available',
    'deployment/coredns',
    '--timeout=50s',
  ]);
}
