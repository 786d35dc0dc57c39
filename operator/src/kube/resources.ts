// The resource types the operator reads and watches, and their REST paths.

export interface ResourceType {
  /** '' for the core group */
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export const RELAY_POLICIES: ResourceType = {
  group: 'sluice.dev',
  version: 'v1alpha1',
  kind: 'RelayPolicy',
  plural: 'relaypolicies',
  namespaced: true,
};

export const SMTP_USERS: ResourceType = {
  group: 'sluice.dev',
  version: 'v1alpha1',
  kind: 'SmtpUser',
  plural: 'smtpusers',
  namespaced: true,
};

export const SENDING_DOMAINS: ResourceType = {
  group: 'sluice.dev',
  version: 'v1alpha1',
  kind: 'SendingDomain',
  plural: 'sendingdomains',
  namespaced: true,
};

export const SECRETS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
};

export const STATEFUL_SETS: ResourceType = {
  group: 'apps',
  version: 'v1',
  kind: 'StatefulSet',
  plural: 'statefulsets',
  namespaced: true,
};

export const CONFIG_MAPS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

export const SERVICES: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Service',
  plural: 'services',
  namespaced: true,
};

export const PERSISTENT_VOLUME_CLAIMS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolumeClaim',
  plural: 'persistentvolumeclaims',
  namespaced: true,
};

export const PODS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Pod',
  plural: 'pods',
  namespaced: true,
};

export const LEASES: ResourceType = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};

export function apiVersionOf(r: ResourceType): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** /api/v1/secrets, /apis/apps/v1/namespaces/ns/statefulsets, ... (all namespaces when none is given) */
export function collectionPath(r: ResourceType, namespace?: string): string {
  const root = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${root}${ns}/${r.plural}`;
}

export function objectPath(r: ResourceType, namespace: string | undefined, name: string): string {
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}`;
}

/** The work-queue and cache key of a namespaced object. */
/**
 * `namespace/name`. Built by join, which makes one flat string: a template literal makes
 * a concatenation that holds a third string, and caches keep one key per object.
 */
export function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? [namespace, name].join('/') : name;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: '', name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
