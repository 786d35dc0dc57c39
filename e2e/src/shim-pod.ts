// One relay pod of the kubelet shim (kubelet-shim.ts): its spec, taken from the
// StatefulSet's template when it starts; its directory with the volumes; the relay
// process that stands in for its container; and its readiness probe.
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeVolume } from './atomic-writer.ts';
import { type LogLine, PodProcess } from './pod-process.ts';
import {
  MountTable,
  projectedPayload,
  type Volume,
  type VolumeMount,
  type VolumeSources,
} from './pod-volumes.ts';
import { type PodNetwork, rewriteRelayConfig } from './relay-pod-config.ts';

const RELAY_MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'relay', 'src', 'main.ts');

export interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path?: string; port: number | string } };
  volumeMounts?: VolumeMount[];
}

export interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  terminationGracePeriodSeconds?: number;
}

export type PodPhase = 'Pending' | 'Running' | 'Terminating';

/** What a test can see of a pod. */
export interface PodView {
  readonly name: string;
  readonly statefulSet: string;
  readonly ordinal: number;
  /** The pod IP: <podNetwork>.<k>.<ordinal + 1> */
  readonly ip: string;
  readonly phase: PodPhase;
  readonly ready: boolean;
  /** `<statefulset>-<hash of the pod template>` the pod was started from */
  readonly revision: string;
  readonly restarts: number;
  /** Why a Pending pod waits (a missing ConfigMap or Secret). */
  readonly waiting: string | undefined;
  /** PID of the running relay process, or undefined. */
  readonly pid: number | undefined;
  /** The relay's JSON log lines since the container (re)started. */
  readonly logs: readonly LogLine[];
  events(event: string): LogLine[];
}

/** volume name → files of each ConfigMap and Secret volume */
export type PodFiles = Map<string, Map<string, Buffer>>;

export class ShimPod implements PodView {
  readonly name: string;
  readonly statefulSet: string;
  readonly ordinal: number;
  readonly ip: string;
  phase: PodPhase = 'Pending';
  ready = false;
  restarts = 0;
  waiting: string | undefined;
  /** Set by the shim when termination starts; resolves once the pod is gone. */
  terminated: Promise<void> | undefined;
  readonly #dir: string;
  #revision = '';
  #spec: PodSpec | undefined;
  #mounts: MountTable | undefined;
  #process: PodProcess | undefined;

  constructor(o: { statefulSet: string; ordinal: number; ip: string; dir: string }) {
    this.statefulSet = o.statefulSet;
    this.ordinal = o.ordinal;
    this.name = `${o.statefulSet}-${o.ordinal}`;
    this.ip = o.ip;
    this.#dir = o.dir;
  }

  get revision(): string {
    return this.#revision;
  }
  get pid(): number | undefined {
    return this.#process?.running ? this.#process.pid : undefined;
  }
  get running(): boolean {
    return this.#process?.running === true;
  }
  get logs(): readonly LogLine[] {
    return this.#process?.logs ?? [];
  }
  events(event: string): LogLine[] {
    return this.#process?.events(event) ?? [];
  }
  get #container(): Container | undefined {
    return this.#spec?.containers[0];
  }
  get terminationGraceMs(): number {
    return (this.#spec?.terminationGracePeriodSeconds ?? 30) * 1000;
  }

  /** Takes the spec from the template (a Pending pod takes the newest one). */
  setSpec(
    spec: PodSpec,
    revision: string,
    claimDir: (claim: string) => string,
    claims: ReadonlySet<string>,
  ): void {
    const container = spec.containers[0];
    if (!container || spec.containers.length !== 1) {
      throw new Error(`${this.name}: the shim runs pods with exactly one container`);
    }
    this.#spec = structuredClone(spec);
    this.#revision = revision;
    const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
    const hostDirOf = (name: string): string => {
      if (volumes.has(name)) return join(this.#dir, 'volumes', name);
      if (claims.has(name)) return claimDir(name);
      throw new Error(`${this.name}: volumeMount ${name} names no volume or claim template`);
    };
    this.#mounts = new MountTable(container.volumeMounts ?? [], hostDirOf, join(this.#dir, 'rootfs'));
  }

  /**
   * The files of the pod's ConfigMap and Secret volumes, the relay config (the file
   * after `--config`) as the pod's namespaces would show it. Throws VolumeSourceMissing.
   */
  files(sources: VolumeSources, network: PodNetwork): PodFiles {
    const container = this.#container;
    const mounts = this.#mounts;
    if (!container || !mounts) return new Map();
    const args = container.args ?? [];
    const configPath = args.includes('--config') ? args[args.indexOf('--config') + 1] : undefined;
    const out: PodFiles = new Map();
    for (const volume of this.#spec?.volumes ?? []) {
      const payload = projectedPayload(volume, sources);
      if (!payload) continue;
      const files = new Map(payload);
      for (const mount of container.volumeMounts ?? []) {
        if (mount.name !== volume.name || mount.subPath) continue;
        for (const [path, content] of files) {
          if (`${mount.mountPath.replace(/\/+$/, '')}/${path}` !== configPath) continue;
          files.set(path, Buffer.from(rewriteRelayConfig(content.toString('utf8'), mounts, network)));
        }
      }
      out.set(volume.name, files);
    }
    return out;
  }

  /** Creates the pod's directory and every volume (claims are kept), then writes the files. */
  async materialise(files: PodFiles): Promise<void> {
    const mounts = this.#container?.volumeMounts ?? [];
    await rm(this.#dir, { recursive: true, force: true });
    await mkdir(join(this.#dir, 'rootfs'), { recursive: true });
    for (const m of mounts) await mkdir(this.#hostPath(m.mountPath), { recursive: true });
    await this.writeFiles(files);
  }

  /** kubelet's volume update: each changed volume is swapped in atomically. */
  async writeFiles(files: PodFiles): Promise<void> {
    for (const [volume, payload] of files) await writeVolume(join(this.#dir, 'volumes', volume), payload);
  }

  /** Starts the container: `node relay/src/main.ts` with its args, paths mapped to the host. */
  run(logFile: string): PodProcess {
    const container = this.#container;
    const mounts = this.#mounts;
    if (!container || !mounts) throw new Error(`${this.name} has no spec`);
    const args = (container.args ?? []).map((a) =>
      a.startsWith('/') && mounts.isMounted(a) ? mounts.hostPath(a) : a,
    );
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.#dir };
    for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    this.#process = new PodProcess({
      command: process.execPath,
      args: [RELAY_MAIN, ...args],
      env,
      cwd: this.#dir,
      logFile,
    });
    return this.#process;
  }

  /** SIGTERM, SIGKILL after the grace period; then the pod's directory goes (claims stay). */
  async stop(): Promise<void> {
    await this.#process?.stop(this.terminationGraceMs);
    await rm(this.#dir, { recursive: true, force: true });
  }

  /** The readinessProbe: HTTP GET on the pod IP, 2xx/3xx is ready; without a probe, running is. */
  async probe(): Promise<boolean> {
    const container = this.#container;
    if (!this.running || !container) return false;
    const httpGet = container.readinessProbe?.httpGet;
    if (!httpGet) return true;
    const port =
      typeof httpGet.port === 'number'
        ? httpGet.port
        : container.ports?.find((p) => p.name === httpGet.port)?.containerPort;
    if (port === undefined) return false;
    try {
      const response = await fetch(`http://${this.ip}:${port}${httpGet.path ?? '/'}`, {
        headers: { connection: 'close' },
        signal: AbortSignal.timeout(1000),
      });
      await response.arrayBuffer();
      return response.status >= 200 && response.status < 400;
    } catch {
      return false;
    }
  }

  #hostPath(containerPath: string): string {
    if (!this.#mounts) throw new Error(`${this.name} has no spec`);
    return this.#mounts.hostPath(containerPath);
  }
}
