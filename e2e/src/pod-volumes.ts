// A pod's volumes and mounts the way kubelet sets them up, on the host: ConfigMap and
// Secret volumes become file payloads (with `items` key → path mappings), emptyDir a
// directory of the pod, and a volumeClaimTemplate a directory per StatefulSet ordinal
// that outlives the pod (a PersistentVolumeClaim `<claim>-<statefulset>-<ordinal>`).
// Container paths map to host paths by the longest matching mountPath, as a mount
// namespace would resolve them.
import { join } from 'node:path';
import type { VolumePayload } from './atomic-writer.ts';

export interface KeyToPath {
  key: string;
  path: string;
}

export interface Volume {
  name: string;
  configMap?: { name?: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { secretName?: string; items?: KeyToPath[]; optional?: boolean };
  /** Several ConfigMaps and Secrets in one directory (only those two source kinds here) */
  projected?: {
    sources?: Array<{
      configMap?: { name?: string; items?: KeyToPath[]; optional?: boolean };
      secret?: { name?: string; items?: KeyToPath[]; optional?: boolean };
    }>;
  };
  emptyDir?: object;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  subPath?: string;
  readOnly?: boolean;
}

export interface ConfigMapData {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

export interface SecretData {
  /** base64 values */
  data?: Record<string, string>;
}

export interface VolumeSources {
  configMap(name: string): ConfigMapData | undefined;
  secret(name: string): SecretData | undefined;
}

/** Thrown while a volume's source is missing: kubelet keeps such a pod in ContainerCreating. */
export class VolumeSourceMissing extends Error {}

function select(all: Map<string, Buffer>, items: KeyToPath[] | undefined, what: string): Map<string, Buffer> {
  if (!items) return all;
  const out = new Map<string, Buffer>();
  for (const { key, path } of items) {
    const value = all.get(key);
    if (value === undefined) throw new VolumeSourceMissing(`${what} has no key ${key}`);
    out.set(path, value);
  }
  return out;
}

/** The files of a ConfigMap, Secret or projected volume, or undefined for other volume types. */
export function projectedPayload(volume: Volume, sources: VolumeSources): VolumePayload | undefined {
  if (volume.projected) {
    // kubelet writes all sources of a projected volume in one atomic swap
    const out = new Map<string, Buffer>();
    for (const source of volume.projected.sources ?? []) {
      const one = source.configMap
        ? projectedPayload({ name: volume.name, configMap: source.configMap }, sources)
        : source.secret
          ? projectedPayload(
              {
                name: volume.name,
                secret: {
                  secretName: source.secret.name ?? '',
                  ...(source.secret.items ? { items: source.secret.items } : {}),
                  ...(source.secret.optional !== undefined ? { optional: source.secret.optional } : {}),
                },
              },
              sources,
            )
          : undefined;
      for (const [path, content] of one ?? []) out.set(path, content);
    }
    return out;
  }
  if (volume.configMap) {
    const { name = '', items, optional } = volume.configMap;
    const cm = sources.configMap(name);
    if (!cm) {
      if (optional) return new Map();
      throw new VolumeSourceMissing(`ConfigMap ${name} not found`);
    }
    const all = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(cm.data ?? {})) all.set(k, Buffer.from(v, 'utf8'));
    for (const [k, v] of Object.entries(cm.binaryData ?? {})) all.set(k, Buffer.from(v, 'base64'));
    return select(all, items, `ConfigMap ${name}`);
  }
  if (volume.secret) {
    const { secretName = '', items, optional } = volume.secret;
    const secret = sources.secret(secretName);
    if (!secret) {
      if (optional) return new Map();
      throw new VolumeSourceMissing(`Secret ${secretName} not found`);
    }
    const all = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(secret.data ?? {})) all.set(k, Buffer.from(v, 'base64'));
    return select(all, items, `Secret ${secretName}`);
  }
  return undefined;
}

/** Container path → host path for one container's mounts (longest mountPath wins). */
export class MountTable {
  readonly #mounts: Array<{ mountPath: string; hostPath: string }>;
  readonly #rootfs: string;

  /** `hostDirOf(volumeName)` is where that volume lives on the host. */
  constructor(mounts: readonly VolumeMount[], hostDirOf: (volume: string) => string, rootfs: string) {
    this.#mounts = mounts
      .map((m) => ({
        mountPath: m.mountPath.replace(/\/+$/, '') || '/',
        hostPath: m.subPath ? join(hostDirOf(m.name), m.subPath) : hostDirOf(m.name),
      }))
      .sort((a, b) => b.mountPath.length - a.mountPath.length);
    this.#rootfs = rootfs;
  }

  /** Where `containerPath` (absolute) is on the host; paths outside every mount are in the image. */
  hostPath(containerPath: string): string {
    for (const { mountPath, hostPath } of this.#mounts) {
      if (containerPath === mountPath) return hostPath;
      if (containerPath.startsWith(`${mountPath}/`))
        return join(hostPath, containerPath.slice(mountPath.length));
    }
    return join(this.#rootfs, containerPath);
  }

  /** Whether the path is under one of the mounts. */
  isMounted(containerPath: string): boolean {
    return this.#mounts.some(
      (m) => containerPath === m.mountPath || containerPath.startsWith(`${m.mountPath}/`),
    );
  }
}
