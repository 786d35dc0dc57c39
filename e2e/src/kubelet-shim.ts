// A stand-in for kubelet and the StatefulSet controller, which cannot run here (no
// container runtime, no kube-controller-manager; see e2e/README.md). It does for the
// relay StatefulSets the operator writes what those two would do, with host processes:
//
//   - watches StatefulSets labelled app.kubernetes.io/managed-by=sluice-operator in one
//     namespace, and the ConfigMaps and Secrets there;
//   - runs one relay process per ordinal < spec.replicas ("pod" <statefulset>-<n>), on its
//     own loopback IP <podNetwork>.<k>.<n+1> as its pod IP (k numbers the StatefulSets
//     from 1; podNetwork is 127.0 unless given, so 127.0.1.1, 127.0.1.2, ...);
//   - materialises the pod's volumes in a directory of its own, the way kubelet does:
//     ConfigMap and Secret volumes with the atomic `..data` symlink swap (`items`
//     honoured), emptyDir, and the spool volumeClaimTemplate as a directory per ordinal
//     that survives the pod (a PersistentVolumeClaim);
//   - rewrites the relay config file as the pod's namespaces would see it (container
//     paths → host paths, listeners and admin on the pod IP; relay-pod-config.ts). A
//     cluster Service name (drain.handoff.host `<policy>-smtp.<ns>.svc`) cannot resolve
//     here: it becomes the IP of the lowest-ordinal other pod the StatefulSet should
//     have (ready in steady state), or the pod's own IP when it is alone;
//   - runs `node relay/src/main.ts` with the container's args in place of the image;
//   - rewrites a volume's files in place when its ConfigMap or Secret changes (the relay
//     reloads them without a restart), as kubelet's periodic volume sync does;
//   - when the pod template changes (e.g. the sluice.dev/config-hash annotation), rolls
//     the pods one at a time, highest ordinal first, each once the others are ready:
//     SIGTERM, wait for the exit (terminationGracePeriodSeconds, then SIGKILL), start;
//   - on scale-in stops the highest ordinals with SIGTERM (the relay drains);
//   - restarts a container that exits on its own, with a backoff;
//   - probes each pod's readinessProbe (HTTP GET on the pod IP) and writes the
//     StatefulSet status (replicas, readyReplicas, updatedReplicas, revisions) as the
//     controller does.
// It creates no Pod objects in the API (`kubectl get pods` shows none) unless asked to
// (podObjects: then each pod it runs is a Pod there, with the template's labels, its pod
// IP and Ready condition in status, deleted when the pod is gone, as the StatefulSet
// controller and kubelet would write them), runs no liveness probes, and ignores
// resources, security contexts, scheduling and images. It talks to
// the API server with the admin's kubeconfig, through the operator's list-watch plumbing
// (operator/src/kube: informers that relist when a watch ends or stalls).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeClient, type KubeObject, loadKubeConfig } from '@sluice/operator/kube-client';
import { apiListWatch, Informer } from '@sluice/operator/kube-informer';
import { PODS, type ResourceType, SECRETS, STATEFUL_SETS } from '@sluice/operator/kube-resources';
import { type ConfigMapData, type SecretData, VolumeSourceMissing } from './pod-volumes.ts';
import type { PodNetwork } from './relay-pod-config.ts';
import { type PodFiles, type PodSpec, type PodView, ShimPod } from './shim-pod.ts';
import { revisionOf, statefulSetStatus } from './statefulset-status.ts';

export type { PodView } from './shim-pod.ts';

const CONFIG_MAPS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
export const MANAGED_SELECTOR = 'app.kubernetes.io/managed-by=sluice-operator';
const PROBE_INTERVAL_MS = 250;
const RETRY_MS = 500;
const MAX_RESTART_BACKOFF_MS = 10_000;

interface StatefulSet extends KubeObject {
  spec: {
    replicas?: number;
    serviceName?: string;
    template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
    volumeClaimTemplates?: Array<{ metadata: { name: string } }>;
  };
}

/** What the shim did to a pod, in order (like the Events kubelet and the controller record). */
export interface PodAction {
  at: number;
  pod: string;
  action: 'Started' | 'Ready' | 'Killing' | 'Gone' | 'Restarted';
}

export interface KubeletShimOptions {
  /** A kubeconfig with the rights of kubelet and the controller manager (the admin's). */
  kubeconfigPath: string;
  namespace: string;
  /** Pod directories, volume claims and container logs go here. */
  dir: string;
  /** The first two octets of the pod IPs, e.g. '127.0' (the default) or '127.42'. */
  podNetwork?: string;
  /** Writes a Pod object for each pod it runs (see the top of the file); off by default. */
  podObjects?: boolean;
}

export class KubeletShim {
  readonly #o: KubeletShimOptions;
  readonly #client: KubeClient;
  readonly #statefulSets: Informer<StatefulSet>;
  readonly #configMaps: Informer<KubeObject & ConfigMapData>;
  readonly #secrets: Informer<KubeObject & SecretData>;
  readonly #pods = new Map<string, ShimPod>();
  readonly #slots = new Map<string, number>();
  readonly #currentRevision = new Map<string, string>();
  readonly #statusWritten = new Map<string, string>();
  #dirty = false;
  #syncing: Promise<void> | undefined;
  #closed = false;
  #probing = false;
  #probeTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #containers = 0;
  /** Lifecycle actions, oldest first. */
  readonly history: PodAction[] = [];
  /** Problems met (retried), for failure messages. */
  readonly errors: string[] = [];

  private constructor(options: KubeletShimOptions) {
    this.#o = options;
    this.#client = new KubeClient(loadKubeConfig(options.kubeconfigPath), { fieldManager: 'kubelet-shim' });
    const informer = <T extends KubeObject>(resource: ResourceType, labelSelector?: string) =>
      new Informer<T>({
        listWatch: apiListWatch<T>(this.#client, resource, {
          namespace: options.namespace,
          ...(labelSelector ? { labelSelector } : {}),
        }),
        name: `shim-${resource.plural}`,
        stallMs: 60_000,
      });
    this.#statefulSets = informer<StatefulSet>(STATEFUL_SETS, MANAGED_SELECTOR);
    this.#configMaps = informer(CONFIG_MAPS);
    this.#secrets = informer(SECRETS);
    const kick = { add: () => this.#kick(), update: () => this.#kick(), delete: () => this.#kick() };
    for (const i of this.#informers()) i.on(kick);
  }

  static async start(options: KubeletShimOptions): Promise<KubeletShim> {
    const shim = new KubeletShim(options);
    await mkdir(join(options.dir, 'logs'), { recursive: true });
    for (const i of shim.#informers()) i.start();
    await Promise.all(shim.#informers().map((i) => i.synced()));
    shim.#probeTimer = setInterval(() => void shim.#probe(), PROBE_INTERVAL_MS);
    shim.#kick();
    return shim;
  }

  /** The pods of one StatefulSet (or all), by ordinal, terminating ones included. */
  pods(statefulSet?: string): PodView[] {
    return this.#list(statefulSet);
  }

  /** The host directory of a volume claim (it outlives the pod): `<claim>-<statefulset>-<ordinal>`. */
  claimDir(claim: string, statefulSet: string, ordinal: number): string {
    return join(this.#o.dir, 'pvc', `${claim}-${statefulSet}-${ordinal}`);
  }

  /** Stops watching and terminates every pod (SIGTERM, as a node drain would). */
  async stop(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#probeTimer);
    clearTimeout(this.#retryTimer);
    await this.#syncing;
    await Promise.all(this.#informers().map((i) => i.stop()));
    await Promise.all([...this.#pods.values()].map((p) => this.#terminate(p)));
  }

  #informers(): Informer<KubeObject>[] {
    return [this.#statefulSets, this.#configMaps, this.#secrets] as Informer<KubeObject>[];
  }

  #list(statefulSet?: string): ShimPod[] {
    return [...this.#pods.values()]
      .filter((p) => statefulSet === undefined || p.statefulSet === statefulSet)
      .sort((a, b) => a.statefulSet.localeCompare(b.statefulSet) || a.ordinal - b.ordinal);
  }

  #record(pod: ShimPod, action: PodAction['action']): void {
    this.history.push({ at: Date.now(), pod: pod.name, action });
  }

  #note(message: string): void {
    this.errors.push(`${new Date().toISOString()} ${message}`);
  }

  /** Runs a sync pass now, or again right after the one running. */
  #kick(): void {
    this.#dirty = true;
    if (this.#syncing || this.#closed) return;
    this.#syncing = (async () => {
      while (this.#dirty && !this.#closed) {
        this.#dirty = false;
        try {
          await this.#sync();
        } catch (err: unknown) {
          this.#note(`sync failed: ${err instanceof Error ? err.message : String(err)}`);
          clearTimeout(this.#retryTimer);
          this.#retryTimer = setTimeout(() => this.#kick(), RETRY_MS);
        }
      }
    })().finally(() => {
      this.#syncing = undefined;
    });
  }

  async #sync(): Promise<void> {
    const sets = this.#statefulSets.list().filter((s) => !s.metadata.deletionTimestamp);
    const wanted = new Set<string>();
    for (const sts of sets) {
      for (let n = 0; n < (sts.spec.replicas ?? 1); n++) wanted.add(`${sts.metadata.name}-${n}`);
    }
    // scale-in (and deleted StatefulSets): all at once, as podManagementPolicy Parallel does
    for (const pod of this.#pods.values()) if (!wanted.has(pod.name)) void this.#terminate(pod);
    for (const sts of sets) await this.#syncStatefulSet(sts);
    for (const sts of sets) await this.#writeStatus(sts);
  }

  async #syncStatefulSet(sts: StatefulSet): Promise<void> {
    const name = sts.metadata.name;
    const replicas = sts.spec.replicas ?? 1;
    const revision = revisionOf(name, sts.spec.template);
    const claims = new Set((sts.spec.volumeClaimTemplates ?? []).map((c) => c.metadata.name));
    for (let ordinal = 0; ordinal < replicas; ordinal++) {
      let pod = this.#pods.get(`${name}-${ordinal}`);
      if (!pod) {
        const dir = join(this.#o.dir, 'pods', `${name}-${ordinal}`);
        pod = new ShimPod({ statefulSet: name, ordinal, ip: this.#podIp(name, ordinal), dir });
        this.#pods.set(pod.name, pod);
      }
      if (pod.phase === 'Pending') {
        pod.setSpec(sts.spec.template.spec, revision, (claim) => this.claimDir(claim, name, ordinal), claims);
        const files = this.#files(pod, replicas);
        if (files) {
          await pod.materialise(files);
          pod.phase = 'Running';
          this.#run(pod);
          if (this.#o.podObjects) await this.#publish(pod, sts, claims);
        }
      } else if (pod.phase === 'Running') {
        const files = this.#files(pod, replicas);
        if (files) await pod.writeFiles(files);
      }
    }
    // rolling update: one pod at a time, highest ordinal first, once all are ready
    const pods = this.#list(name);
    const settled = pods.length === replicas && pods.every((p) => p.phase === 'Running' && p.ready);
    const stale = pods.filter((p) => p.revision !== revision).sort((a, b) => b.ordinal - a.ordinal)[0];
    if (settled && stale) void this.#terminate(stale);
  }

  #podIp(statefulSet: string, ordinal: number): string {
    let slot = this.#slots.get(statefulSet);
    if (slot === undefined) {
      slot = this.#slots.size + 1;
      this.#slots.set(statefulSet, slot);
    }
    return `${this.#o.podNetwork ?? '127.0'}.${slot}.${ordinal + 1}`;
  }

  /** The pod's volume files now, or undefined while a source is missing (the pod waits). */
  #files(pod: ShimPod, replicas: number): PodFiles | undefined {
    const ns = this.#o.namespace;
    // a Service name stands for the lowest-ordinal other pod the StatefulSet should have
    const peer = Array.from({ length: replicas }, (_, i) => i).find((i) => i !== pod.ordinal);
    const network: PodNetwork = {
      podIp: pod.ip,
      serviceIp: () => (peer === undefined ? pod.ip : this.#podIp(pod.statefulSet, peer)),
    };
    try {
      const files = pod.files(
        { configMap: (n) => this.#configMaps.get(ns, n), secret: (n) => this.#secrets.get(ns, n) },
        network,
      );
      pod.waiting = undefined;
      return files;
    } catch (err: unknown) {
      if (!(err instanceof VolumeSourceMissing)) throw err;
      // a running pod keeps the files it has, as with kubelet
      if (pod.phase === 'Pending') pod.waiting = err.message;
      return undefined;
    }
  }

  /** Starts the container, and again after it exits on its own (restartPolicy Always). */
  #run(pod: ShimPod): void {
    const proc = pod.run(join(this.#o.dir, 'logs', `${pod.name}.${++this.#containers}.log`));
    this.#record(pod, pod.restarts === 0 ? 'Started' : 'Restarted');
    void proc.exited.then(({ code, signal }) => {
      if (pod.phase !== 'Running' || this.#closed) return;
      pod.ready = false;
      this.#note(`${pod.name} exited (${code ?? signal}): ${proc.stderr.slice(-500)}`);
      const delay = Math.min(MAX_RESTART_BACKOFF_MS, 1000 * 2 ** pod.restarts);
      setTimeout(() => {
        if (pod.phase !== 'Running' || this.#closed) return;
        pod.restarts++;
        this.#run(pod);
      }, delay);
      this.#kick();
    });
  }

  #terminate(pod: ShimPod): Promise<void> {
    if (pod.terminated) return pod.terminated;
    pod.phase = 'Terminating';
    pod.ready = false;
    this.#record(pod, 'Killing');
    pod.terminated = (async () => {
      await pod.stop();
      this.#pods.delete(pod.name);
      if (this.#o.podObjects) {
        await this.#client
          .delete('v1', 'Pod', this.#o.namespace, pod.name)
          .catch((err: unknown) => this.#note(`cannot delete Pod ${pod.name}: ${String(err)}`));
      }
      this.#record(pod, 'Gone');
      this.#kick();
    })();
    return pod.terminated;
  }

  async #probe(): Promise<void> {
    if (this.#probing || this.#closed) return;
    this.#probing = true;
    try {
      const running = [...this.#pods.values()].filter((p) => p.phase === 'Running');
      const results = await Promise.all(running.map((p) => p.probe()));
      let changed = false;
      running.forEach((pod, i) => {
        const ready = results[i] === true && pod.phase === 'Running';
        if (ready === pod.ready) return;
        pod.ready = ready;
        if (ready) this.#record(pod, 'Ready');
        if (this.#o.podObjects) void this.#publishStatus(pod);
        changed = true;
      });
      if (changed) this.#kick();
    } finally {
      this.#probing = false;
    }
  }

  /** The Pod object the StatefulSet controller would create for a pod, and its status. */
  async #publish(pod: ShimPod, sts: StatefulSet, claims: ReadonlySet<string>): Promise<void> {
    const { spec, metadata } = sts.spec.template;
    try {
      await this.#client.apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: pod.name,
          namespace: this.#o.namespace,
          labels: { ...metadata?.labels, 'statefulset.kubernetes.io/pod-name': pod.name },
        },
        spec: {
          ...spec,
          // no nodeName: a Pod bound to a node waits for its kubelet to confirm a deletion
          hostname: pod.name,
          ...(sts.spec.serviceName ? { subdomain: sts.spec.serviceName } : {}),
          // the claims of volumeClaimTemplates, as the controller adds them
          volumes: [
            ...(spec.volumes ?? []),
            ...[...claims].map((claim) => ({
              name: claim,
              persistentVolumeClaim: { claimName: `${claim}-${pod.name}` },
            })),
          ],
        },
      } as KubeObject);
    } catch (err: unknown) {
      this.#note(`cannot create Pod ${pod.name}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    await this.#publishStatus(pod);
  }

  async #publishStatus(pod: ShimPod): Promise<void> {
    const ready = pod.ready ? 'True' : 'False';
    await this.#client
      .patchStatus(PODS, this.#o.namespace, pod.name, {
        phase: 'Running',
        podIP: pod.ip,
        podIPs: [{ ip: pod.ip }],
        conditions: [{ type: 'Ready', status: ready, lastTransitionTime: new Date().toISOString() }],
      })
      .catch((err: unknown) => this.#note(`cannot write the status of Pod ${pod.name}: ${String(err)}`));
  }

  /** Writes the status the StatefulSet controller would, when it changed. */
  async #writeStatus(sts: StatefulSet): Promise<void> {
    const { name, namespace = this.#o.namespace, uid = name } = sts.metadata;
    const status = statefulSetStatus({
      generation: sts.metadata.generation ?? 0,
      replicas: sts.spec.replicas ?? 1,
      pods: this.#list(name),
      updateRevision: revisionOf(name, sts.spec.template),
      currentRevision: this.#currentRevision.get(uid),
    });
    this.#currentRevision.set(uid, status.currentRevision);
    const key = JSON.stringify(status);
    if (this.#statusWritten.get(uid) === key) return;
    await this.#client.patchStatus(STATEFUL_SETS, namespace, name, status);
    this.#statusWritten.set(uid, key);
  }
}
