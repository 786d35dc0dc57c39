// The primary of a relay with `workers: N` (N > 1): it forks the workers, serves the
// admin port for all of them, passes signals on and forks a worker again when one dies.
// It accepts no SMTP connection itself: each worker binds the SMTP ports with
// SO_REUSEPORT and the kernel spreads connections over them.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { join } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import type { RelayConfig } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';
import { bindAddress } from '../net/bind-address.ts';
import type { Logger } from '../observability/logger.ts';
import { loadCertificate } from '../tls/certificate.ts';
import { isMetricsResponse, isWorkerReady, type MetricsRequest, type WorkerSignal } from './protocol.ts';

/** A worker that died this soon after it was forked waits longer before the next fork. */
const QUICK_DEATH_MS = 5_000;
const MAX_BACKOFF_MS = 30_000;

interface Slot {
  index: number;
  worker: Worker;
  /** Its loopback admin port, once it reported ready. */
  adminPort?: number;
  forkedAt: number;
  /** Deaths in a row that came soon after a fork. */
  quickDeaths: number;
}

export interface SupervisorOptions {
  config: RelayConfig;
  count: number;
  logger: Logger;
  /** The environment of worker `index` (what main.ts reads back in the worker). */
  env: (index: number, ports: Readonly<Record<string, number>>) => Record<string, string>;
}

/** Picks a free port for a listener configured with port 0, once for every worker. */
async function freePort(address: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: address, reusePort: true }, resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class Supervisor {
  readonly registry = new Registry();
  readonly #options: SupervisorOptions;
  readonly #log: Logger;
  readonly #slots = new Map<number, Slot>();
  readonly #restarts: Counter;
  #ports: Record<string, number> = {};
  #metricsRequests = 0;
  #stopping = false;
  #onAllExited: (() => void) | undefined;
  #startFailed: ((err: Error) => void) | undefined;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#restarts = new Counter({
      name: 'sluice_worker_restarts_total',
      help: 'Workers forked again after they died',
      registers: [this.registry],
    });
    new Gauge({
      name: 'sluice_workers',
      help: 'Worker processes configured (workers)',
      registers: [this.registry],
      collect() {
        this.set(options.count);
      },
    });
    // prom-client leaves each worker's start time out of the merged metrics: the pod's is the primary's
    const startTime = Math.round(Date.now() / 1000 - process.uptime());
    new Gauge({
      name: 'process_start_time_seconds',
      help: 'Start time of the process since unix epoch in seconds.',
      aggregator: 'first',
      registers: [this.registry],
      collect() {
        this.set(startTime);
      },
    });
    const slots = this.#slots;
    new Gauge({
      name: 'sluice_workers_ready',
      help: 'Worker processes serving',
      registers: [this.registry],
      collect() {
        this.set([...slots.values()].filter((s) => s.adminPort !== undefined).length);
      },
    });
  }

  /** The SMTP port of each listener, shared by every worker. */
  get ports(): Readonly<Record<string, number>> {
    return this.#ports;
  }
  get count(): number {
    return this.#options.count;
  }
  get stopping(): boolean {
    return this.#stopping;
  }
  /** The workers' loopback admin ports, by index; undefined for one not (yet) serving. */
  adminPorts(): Array<number | undefined> {
    return Array.from({ length: this.count }, (_, i) => this.#slots.get(i)?.adminPort);
  }

  /** Forks every worker and resolves once all of them serve (rejects if one dies first). */
  async start(): Promise<void> {
    const { config } = this.#options;
    for (const listener of config.listeners) {
      this.#ports[listener.name] =
        listener.port === 0 ? await freePort(await bindAddress(listener.address)) : listener.port;
    }
    // one self-signed certificate for all workers, made before they start
    if (!config.tls.certFile && !config.tls.keyFile) {
      await loadCertificate({
        stateDir: config.stateDir ?? join(config.spoolDir, '..', 'state'),
        hostname: config.hostname,
      });
    }
    cluster.on('exit', (worker, code, signal) => this.#exited(worker, code, signal));
    const ready = new Promise<void>((resolve, reject) => {
      this.#startFailed = reject;
      cluster.on('message', (worker, message: unknown) => {
        if (!isWorkerReady(message)) return;
        const slot = this.#slots.get(message.index);
        if (slot?.worker !== worker) return;
        slot.adminPort = message.adminPort;
        slot.quickDeaths = 0;
        this.#log.info(
          { event: 'worker_ready', worker: message.index, pid: worker.process.pid },
          'worker serving',
        );
        if (this.adminPorts().every((p) => p !== undefined)) resolve();
      });
    });
    for (let i = 0; i < this.count; i++) this.#fork(i);
    try {
      await ready;
    } finally {
      this.#startFailed = undefined;
    }
  }

  #fork(index: number): void {
    const worker = cluster.fork(this.#options.env(index, this.#ports));
    const previous = this.#slots.get(index);
    this.#slots.set(index, { index, worker, forkedAt: Date.now(), quickDeaths: previous?.quickDeaths ?? 0 });
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    const slot = [...this.#slots.values()].find((s) => s.worker === worker);
    if (!slot) return;
    if (this.#stopping) {
      this.#slots.delete(slot.index);
      this.#log.info({ event: 'worker_stopped', worker: slot.index, code, signal }, 'worker stopped');
      if (this.#slots.size === 0) this.#onAllExited?.();
      return;
    }
    const starting = this.#startFailed !== undefined;
    this.#log.error(
      { event: 'worker_exit', worker: slot.index, pid: worker.process.pid, code, signal },
      starting ? 'worker exited before it served; stopping' : 'worker died; forking it again',
    );
    if (this.#startFailed) {
      this.#startFailed(
        new SluiceError(
          'SLUICE_ERR_WORKER_START',
          `worker ${slot.index} exited (${signal ?? `code ${code}`}) before it served; see its log`,
        ),
      );
      return;
    }
    this.#restarts.inc();
    slot.adminPort = undefined;
    const quick = Date.now() - slot.forkedAt < QUICK_DEATH_MS;
    slot.quickDeaths = quick ? slot.quickDeaths + 1 : 0;
    // a worker that dies as soon as it starts is not forked in a tight loop
    const delay = slot.quickDeaths === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** slot.quickDeaths);
    setTimeout(() => {
      if (!this.#stopping) this.#fork(slot.index);
    }, delay).unref();
  }

  /**
   * The metrics of every serving worker (getMetricsAsJSON), for AggregatorRegistry.aggregate.
   * A worker that does not answer within timeoutMs is left out, and said so in the log.
   */
  workerMetrics(timeoutMs = 5_000): Promise<unknown[][]> {
    const id = ++this.#metricsRequests;
    const asked = [...this.#slots.values()].filter(
      (s) => s.adminPort !== undefined && s.worker.isConnected(),
    );
    return new Promise((resolve) => {
      const answers = new Map<Worker, unknown[]>();
      const finish = () => {
        clearTimeout(timer);
        cluster.off('message', onMessage);
        const silent = asked.filter((s) => !answers.has(s.worker)).map((s) => s.index);
        if (silent.length > 0)
          this.#log.warn(
            { event: 'worker_metrics_missing', workers: silent },
            'workers left out of /metrics',
          );
        resolve([...answers.values()]);
      };
      const onMessage = (worker: Worker, message: unknown) => {
        if (!isMetricsResponse(message) || message.id !== id) return;
        answers.set(worker, message.metrics);
        if (answers.size === asked.length) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      cluster.on('message', onMessage);
      if (asked.length === 0) finish();
      for (const slot of asked)
        slot.worker.send({ type: 'sluice:metrics-request', id } satisfies MetricsRequest);
    });
  }

  /** Passes a signal to every worker. */
  signal(signal: WorkerSignal['signal']): void {
    for (const slot of this.#slots.values()) {
      if (slot.worker.isConnected())
        slot.worker.send({ type: 'sluice:signal', signal } satisfies WorkerSignal);
    }
  }

  /**
   * Stops: readiness goes false at once, every worker drains (its own drain order) and
   * the promise resolves when all have exited.
   */
  stop(signal: 'SIGTERM' | 'SIGINT'): Promise<void> {
    const first = !this.#stopping;
    this.#stopping = true;
    const exited = new Promise<void>((resolve) => {
      if (this.#slots.size === 0) resolve();
      this.#onAllExited = resolve;
    });
    if (first)
      this.#log.info({ event: 'shutdown', signal, workers: this.#slots.size }, 'draining every worker');
    this.signal(signal);
    return exited;
  }

  /** Kills every worker at once (a start that failed). */
  kill(): void {
    this.#stopping = true;
    for (const slot of this.#slots.values()) slot.worker.process.kill('SIGKILL');
  }
}
