// The operator's own Prometheus metrics, in their own registry.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ControllerMetrics } from '../controller/controller.ts';
import type { WriteVerb } from '../kube/client.ts';
import { OPERATOR_VERSION } from '../version.ts';

export class OperatorMetrics implements ControllerMetrics {
  readonly registry = new Registry();
  readonly #reconciles: Counter<'kind' | 'result'>;
  readonly #errors: Counter<'kind'>;
  readonly #duration: Histogram<'kind'>;
  readonly #leader: Gauge;
  readonly #writes: Counter<'verb'>;
  readonly #hashed: Counter;
  readonly #usageDeferred: Counter;
  #queueDepth: () => number = () => 0;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // prom-client's own names (process_*, nodejs_*), which stock Node.js dashboards query
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'sluice_operator_build_info',
      help: 'Always 1; the labels say which release of the operator runs on which Node.js',
      labelNames: ['version', 'nodejs_version'],
      registers,
    }).set({ version: OPERATOR_VERSION, nodejs_version: process.versions.node }, 1);
    this.#reconciles = new Counter({
      name: 'sluice_operator_reconcile_total',
      help: 'Reconciles by kind and result (success, error)',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.#errors = new Counter({
      name: 'sluice_operator_reconcile_errors_total',
      help: 'Reconciles that failed and were requeued with backoff',
      labelNames: ['kind'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'sluice_operator_reconcile_duration_seconds',
      help: 'How long one reconcile took',
      labelNames: ['kind'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    const depth = () => this.#queueDepth();
    new Gauge({
      name: 'sluice_operator_workqueue_depth',
      help: 'Keys waiting in the work queue',
      registers,
      collect() {
        this.set(depth());
      },
    });
    this.#leader = new Gauge({
      name: 'sluice_operator_leader',
      help: '1 while this replica leads (does the work), 0 on standby',
      registers,
    });
    this.#leader.set(0);
    this.#writes = new Counter({
      name: 'sluice_operator_kube_writes_total',
      help: 'Write requests the reconciles sent to the Kubernetes API (not Lease renewals), by verb',
      labelNames: ['verb'],
      registers,
    });
    this.#hashed = new Counter({
      name: 'sluice_operator_password_hashes_total',
      help: 'Plain passwords hashed (scrypt) for the users files; an unchanged password is never hashed again, also not after a restart',
      registers,
    });
    this.#usageDeferred = new Counter({
      name: 'sluice_operator_usage_writes_deferred_total',
      help: 'SmtpUser usage updates left for a later pass because the usage write budget was spent',
      registers,
    });
  }

  passwordHashed(): void {
    this.#hashed.inc();
  }

  usageDeferred(): void {
    this.#usageDeferred.inc();
  }

  reconciled(kind: string, result: 'success' | 'error', seconds: number): void {
    this.#reconciles.inc({ kind, result });
    if (result === 'error') this.#errors.inc({ kind });
    this.#duration.observe({ kind }, seconds);
  }

  leading(isLeader: boolean): void {
    this.#leader.set(isLeader ? 1 : 0);
  }

  kubeWrite(verb: WriteVerb): void {
    this.#writes.inc({ verb });
  }

  /** Where the queue depth gauge reads from. */
  bindQueueDepth(read: () => number): void {
    this.#queueDepth = read;
  }
}
