// Who may reach a policy's relay pods: SMTP from anywhere; the admin port (/metrics,
// /readyz, the queue, usage and abuse APIs) only from the operator's pods, the
// monitoring namespaces and the addresses the chart names (the API servers'). The relays' own traffic out (MX hosts, Redis, DNS) is left
// open: where it goes is the policy's choice. The relays live in the policies'
// namespaces, which the chart does not know, so the operator renders one per policy.
import type { V1LabelSelector } from '@kubernetes/client-node';
import { PRIVATE_NETWORKS } from '@sluice/relay/config-schema';
import type { RelayPolicy } from '../api/types.ts';
import { ADMIN_PORT, HANDOFF_PORT, names, selector } from './names.ts';
import { ownedMeta } from './workload.ts';

export interface RelayNetworkPolicySettings {
  /** Where the operator runs; its pods call the relays' usage and abuse APIs. */
  operatorNamespace: string;
  operatorPodLabels: Record<string, string>;
  /** Namespaces whose pods (Prometheus) may scrape the relays. */
  monitoringNamespaceSelector: V1LabelSelector;
  /**
   * Addresses that may also reach the admin port: the API servers', so `kubectl sluice`
   * through the pod proxy gets through (a NetworkPolicy cannot select the API server).
   */
  adminFromCidrs?: string[];
}

export interface NetworkSettings {
  /** The pod network(s): where a relay may authenticate as the handoff account from. */
  podNetworks: readonly string[];
  /** A NetworkPolicy per RelayPolicy for its pods; none when absent. */
  relayNetworkPolicy?: RelayNetworkPolicySettings;
}

export const DEFAULT_NETWORK_SETTINGS: NetworkSettings = { podNetworks: PRIVATE_NETWORKS };

// A plain object: client-node's V1NetworkPolicyIngressRule spells `from` as `_from`.
export function relayNetworkPolicy(
  policy: RelayPolicy,
  settings: RelayNetworkPolicySettings,
): Record<string, unknown> {
  const tcp = (port: number) => ({ protocol: 'TCP', port });
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMeta(policy, names(policy).networkPolicy),
    spec: {
      podSelector: { matchLabels: selector(policy) },
      policyTypes: ['Ingress'],
      ingress: [
        // mail clients
        { ports: policy.spec.listeners.map((l) => tcp(l.port)) },
        // peer relays handing over their queue when they drain
        { from: [{ podSelector: { matchLabels: selector(policy) } }], ports: [tcp(HANDOFF_PORT)] },
        {
          from: [
            {
              namespaceSelector: {
                matchLabels: { 'kubernetes.io/metadata.name': settings.operatorNamespace },
              },
              podSelector: { matchLabels: settings.operatorPodLabels },
            },
            { namespaceSelector: settings.monitoringNamespaceSelector },
            ...(settings.adminFromCidrs ?? []).map((cidr) => ({ ipBlock: { cidr } })),
          ],
          ports: [tcp(ADMIN_PORT)],
        },
      ],
    },
  };
}

/**
 * The settings from the operator's environment: POD_NETWORKS (comma-separated CIDRs;
 * default the private ranges) and RELAY_NETWORK_POLICY (JSON of RelayNetworkPolicySettings;
 * unset or empty: no NetworkPolicy). Throws naming the variable when one is malformed.
 */
export function networkSettingsFromEnv(env: {
  POD_NETWORKS?: string | undefined;
  RELAY_NETWORK_POLICY?: string | undefined;
}): NetworkSettings {
  const podNetworks = (env.POD_NETWORKS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const settings: NetworkSettings = {
    podNetworks: podNetworks.length > 0 ? podNetworks : PRIVATE_NETWORKS,
  };
  const text = env.RELAY_NETWORK_POLICY?.trim();
  if (!text) return settings;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err: unknown) {
    throw new Error(`RELAY_NETWORK_POLICY is not JSON: ${(err as Error).message}`);
  }
  const p = parsed as Partial<RelayNetworkPolicySettings> | null;
  if (
    !p ||
    typeof p.operatorNamespace !== 'string' ||
    p.operatorNamespace === '' ||
    !isStringMap(p.operatorPodLabels) ||
    typeof p.monitoringNamespaceSelector !== 'object' ||
    p.monitoringNamespaceSelector === null
  ) {
    throw new Error(
      'RELAY_NETWORK_POLICY must hold operatorNamespace, operatorPodLabels and monitoringNamespaceSelector',
    );
  }
  if (
    p.adminFromCidrs !== undefined &&
    (!Array.isArray(p.adminFromCidrs) ||
      !p.adminFromCidrs.every((c) => typeof c === 'string' && CIDR.test(c)))
  ) {
    throw new Error(
      `RELAY_NETWORK_POLICY.adminFromCidrs must be a list of CIDRs (e.g. "172.20.0.1/32"), not ${JSON.stringify(p.adminFromCidrs)}`,
    );
  }
  return { ...settings, relayNetworkPolicy: p as RelayNetworkPolicySettings };
}

const CIDR = /^[0-9a-fA-F:.]+\/[0-9]{1,3}$/;

function isStringMap(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.keys(value).length > 0 &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}
