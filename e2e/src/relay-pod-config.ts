// What a pod's mount and network namespaces do to the relay's config, done to the file
// instead: the relay process runs on the host, so the container paths the operator wrote
// (/etc/sluice/..., /var/spool/sluice) are rewritten to where those mounts live on the
// host, the listeners and the admin server bind the pod's own IP (a pod binds 0.0.0.0
// in its own network namespace), and a cluster Service name, which nothing resolves
// here, becomes the IP of a pod behind it.
import { parse, stringify } from 'yaml';
import type { MountTable } from './pod-volumes.ts';

export interface PodNetwork {
  podIp: string;
  /** The pod IP a `<service>.<namespace>.svc[.cluster.local]` name stands for here. */
  serviceIp(host: string): string | undefined;
}

const SERVICE_NAME = /^[a-z0-9-]+\.[a-z0-9-]+\.svc(\.cluster\.local)?\.?$/;

function mapPaths(value: unknown, mounts: MountTable): unknown {
  if (typeof value === 'string') {
    return value.startsWith('/') && mounts.isMounted(value) ? mounts.hostPath(value) : value;
  }
  if (Array.isArray(value)) return value.map((v) => mapPaths(v, mounts));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapPaths(v, mounts)]));
  }
  return value;
}

type Json = Record<string, unknown>;

function object(value: unknown): Json | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
}

function mapService(holder: Json | undefined, network: PodNetwork): void {
  const host = holder?.host;
  if (holder && typeof host === 'string' && SERVICE_NAME.test(host)) {
    const ip = network.serviceIp(host);
    if (ip) holder.host = ip;
  }
}

/** The relay config text as the relay in this pod would see it through its namespaces. */
export function rewriteRelayConfig(text: string, mounts: MountTable, network: PodNetwork): string {
  const config = object(mapPaths(parse(text), mounts));
  if (!config) return text; // not a mapping: the relay will refuse it, as it would in a pod
  if (Array.isArray(config.listeners)) {
    for (const listener of config.listeners) {
      const l = object(listener);
      if (l) l.address = network.podIp;
    }
  }
  const admin = object(config.admin);
  if (admin) admin.address = network.podIp;
  else config.admin = { address: network.podIp };
  mapService(object(object(config.drain)?.handoff), network);
  mapService(object(object(config.delivery)?.smarthost), network);
  return stringify(config, { lineWidth: 0 });
}
