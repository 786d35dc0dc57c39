// What the primary and its workers tell each other over the cluster IPC channel.
import { availableParallelism } from 'node:os';

/** A worker is serving: its admin server (loopback, for the primary only) is at adminPort. */
export interface WorkerReady {
  type: 'sluice:worker-ready';
  index: number;
  adminPort: number;
}

/** The primary passes on a signal it received (SIGTERM, SIGINT, SIGHUP). */
export interface WorkerSignal {
  type: 'sluice:signal';
  signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP';
}

/** The primary asks a serving worker for its metrics (prom-client's getMetricsAsJSON). */
export interface MetricsRequest {
  type: 'sluice:metrics-request';
  id: number;
}

export interface MetricsResponse {
  type: 'sluice:metrics-response';
  id: number;
  metrics: unknown[];
}

export function isMetricsRequest(message: unknown): message is MetricsRequest {
  return (message as MetricsRequest | null)?.type === 'sluice:metrics-request';
}

export function isMetricsResponse(message: unknown): message is MetricsResponse {
  return (message as MetricsResponse | null)?.type === 'sluice:metrics-response';
}

export function isWorkerReady(message: unknown): message is WorkerReady {
  return (message as WorkerReady | null)?.type === 'sluice:worker-ready';
}

export function isWorkerSignal(message: unknown): message is WorkerSignal {
  return (message as WorkerSignal | null)?.type === 'sluice:signal';
}

/**
 * The number of workers of a config's `workers` field. auto is os.availableParallelism():
 * on Linux, Node 24's libuv (1.49 and later) takes the smaller of the CPUs the process may
 * run on (sched_getaffinity, taskset) and the cgroup v1/v2 CPU quota rounded down (a
 * container's CPU limit; at least 1); a CPU request without a limit does not count.
 */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, availableParallelism()) : workers;
}
