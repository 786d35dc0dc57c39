// The StatefulSet status the controller would write, from the pods the shim runs: pure,
// so what the operator reads (readyReplicas, updatedReplicas, revisions) is easy to follow.
import { createHash } from 'node:crypto';

export interface PodState {
  phase: 'Pending' | 'Running' | 'Terminating';
  ready: boolean;
  revision: string;
}

export interface StatefulSetStatus {
  observedGeneration: number;
  replicas: number;
  readyReplicas: number;
  availableReplicas: number;
  currentReplicas: number;
  updatedReplicas: number;
  currentRevision: string;
  updateRevision: string;
  collisionCount: number;
}

/** `<statefulset>-<10 hex digits of the pod template's hash>`, like a ControllerRevision name. */
export function revisionOf(name: string, template: unknown): string {
  return `${name}-${createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 10)}`;
}

/**
 * The status for `replicas` wanted pods at `updateRevision`. `currentRevision` is the
 * revision the set was at before; it becomes the update revision once every wanted pod
 * runs it and is ready (the rollout is complete).
 */
export function statefulSetStatus(o: {
  generation: number;
  replicas: number;
  pods: readonly PodState[];
  updateRevision: string;
  currentRevision: string | undefined;
}): StatefulSetStatus {
  const live = o.pods.filter((p) => p.phase !== 'Terminating');
  const ready = live.filter((p) => p.ready).length;
  const updated = live.filter((p) => p.revision === o.updateRevision).length;
  const complete = live.length === o.replicas && updated === o.replicas && ready === o.replicas;
  const current = complete || o.currentRevision === undefined ? o.updateRevision : o.currentRevision;
  return {
    observedGeneration: o.generation,
    replicas: o.pods.length,
    readyReplicas: ready,
    availableReplicas: ready,
    currentReplicas: live.filter((p) => p.revision === current).length,
    updatedReplicas: updated,
    currentRevision: current,
    updateRevision: o.updateRevision,
    collisionCount: 0,
  };
}
