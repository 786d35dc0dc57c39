// Names and labels of what the operator creates for a RelayPolicy, in one place.
import type { RelayPolicy } from '../api/types.ts';

export const MANAGED_BY = 'sluice-operator';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** Label selectors of what the operator made, and of everything else (a customer's Secret, say). */
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
export const NOT_MANAGED_SELECTOR = `${MANAGED_BY_LABEL}!=${MANAGED_BY}`;

export function names(policy: RelayPolicy) {
  const base = policy.metadata.name;
  return {
    configMap: `${base}-relay-config`,
    /** Prefix of the users shard Secrets (and the name of the single users Secret of earlier versions) */
    usersSecret: `${base}-relay-users`,
    internalSecret: `${base}-relay-internal`,
    statefulSet: `${base}-relay`,
    smtpService: `${base}-smtp`,
    adminService: `${base}-relay-admin`,
    headlessService: `${base}-relay-headless`,
    pdb: `${base}-relay`,
    hpa: `${base}-relay`,
    serviceMonitor: `${base}-relay`,
    networkPolicy: `${base}-relay`,
  };
}

/** Labels on every object of a policy; the pod selector uses the first two. */
export function labels(policy: RelayPolicy): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'sluice-relay',
    'app.kubernetes.io/instance': policy.metadata.name,
    [MANAGED_BY_LABEL]: MANAGED_BY,
    'app.kubernetes.io/part-of': 'sluice',
  };
}

export function selector(policy: RelayPolicy): Record<string, string> {
  const l = labels(policy);
  return {
    'app.kubernetes.io/name': l['app.kubernetes.io/name'] as string,
    'app.kubernetes.io/instance': l['app.kubernetes.io/instance'] as string,
  };
}

export function selectorString(policy: RelayPolicy): string {
  return Object.entries(selector(policy))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Where the pods mount what the operator writes. */
export const PATHS = {
  configDir: '/etc/sluice/config',
  config: '/etc/sluice/config/config.yaml',
  usersDir: '/etc/sluice/users',
  /** A directory: one file per users shard Secret (a projected volume) */
  users: '/etc/sluice/users',
  tlsDir: '/etc/sluice/tls',
  /** spec.delivery.trustedCa, as ca.crt */
  trustedCaDir: '/etc/sluice/trusted-ca',
  internalDir: '/etc/sluice/internal',
  spool: '/var/spool/sluice',
  state: '/var/spool/sluice/state',
} as const;

export const ADMIN_PORT = 9587;
/**
 * The relays' internal listener for the drain hand-off: reached pod to pod through the
 * headless Service, never through the load balancer, and never expecting a PROXY header.
 */
export const HANDOFF_PORT = 10025;
export const HANDOFF_LISTENER = 'handoff';
export const INTERNAL_USER = 'sluice-internal-handoff';
