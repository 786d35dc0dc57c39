// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the leader
// renews the Lease every few seconds; a standby takes it over once it has seen the same
// record for a whole lease duration (measured on its own clock, so clock skew between
// replicas does not matter); writes carry the resourceVersion, so two replicas never
// both win. On shutdown the leader clears the holder and a standby takes over at once.
import { isConflict } from './api-error.ts';
import { type Lease, microTime } from './client.ts';

export interface LeaseStore {
  getLease(namespace: string, name: string): Promise<Lease | undefined>;
  createLease(lease: Lease): Promise<Lease>;
  replaceLease(lease: Lease): Promise<Lease>;
}

export interface LeaderLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface LeaderElectorOptions {
  leases: LeaseStore;
  namespace: string;
  name: string;
  identity: string;
  /** How long a Lease holds without renewal; default 15 s. */
  leaseDurationMs?: number;
  /** How often the leader renews; default 5 s. */
  renewIntervalMs?: number;
  /** How often a standby tries to acquire; default 2 s. */
  retryIntervalMs?: number;
  /** The leader steps down when it could not renew for this long; default 10 s. */
  renewDeadlineMs?: number;
  now?: () => number;
  onStartedLeading?: () => void | Promise<void>;
  onStoppedLeading?: () => void | Promise<void>;
  log?: LeaderLogger;
}

type Attempt = 'leading' | 'held' | 'failed';

export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectorOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading'>>;
  readonly #onStarted: LeaderElectorOptions['onStartedLeading'];
  readonly #onStopped: LeaderElectorOptions['onStoppedLeading'];
  readonly #log: LeaderLogger | undefined;
  #leader = false;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #lastRenew = 0;
  #observedRecord = '';
  #observedAt = 0;
  #lastContact = Number.NEGATIVE_INFINITY;
  #deadline: NodeJS.Timeout | undefined;

  constructor(options: LeaderElectorOptions) {
    this.#o = {
      leases: options.leases,
      namespace: options.namespace,
      name: options.name,
      identity: options.identity,
      leaseDurationMs: options.leaseDurationMs ?? 15_000,
      renewIntervalMs: options.renewIntervalMs ?? 5_000,
      retryIntervalMs: options.retryIntervalMs ?? 2_000,
      renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
      now: options.now ?? Date.now,
    };
    this.#onStarted = options.onStartedLeading;
    this.#onStopped = options.onStoppedLeading;
    this.#log = options.log;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  get identity(): string {
    return this.#o.identity;
  }

  /** Whether the Lease could be read within the last lease duration (a standby's readiness). */
  get healthy(): boolean {
    return this.#o.now() - this.#lastContact <= this.#o.leaseDurationMs;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops campaigning; a leader first stops its work (onStoppedLeading), then frees the Lease. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    this.#loop = undefined;
    if (this.#leader) {
      await this.#stepDown('shutdown');
      await this.#release();
    }
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const now = this.#o.now();
      let attempt: Attempt = 'failed';
      try {
        // a hung API server must not hold the loop past the renew deadline
        attempt = await this.#within(this.#o.renewDeadlineMs, this.#tryAcquireOrRenew(now));
      } catch (err: unknown) {
        this.#log?.warn({ lease: this.#o.name, err: String(err) }, 'lease request failed');
      }
      if (!this.#running) break;
      if (attempt === 'leading') {
        this.#lastRenew = now;
        this.#armDeadline(now);
        if (!this.#leader) {
          this.#leader = true;
          this.#log?.info({ lease: this.#o.name, identity: this.#o.identity }, 'started leading');
          Promise.resolve()
            .then(() => this.#onStarted?.())
            .catch((err: unknown) => this.#log?.warn({ err: String(err) }, 'onStartedLeading failed'));
        }
      } else if (this.#leader && (attempt === 'held' || now - this.#lastRenew > this.#o.renewDeadlineMs)) {
        await this.#stepDown(
          attempt === 'held' ? 'another replica holds the lease' : 'renew deadline passed',
        );
      }
      await this.#pause(this.#leader ? this.#o.renewIntervalMs : this.#o.retryIntervalMs);
    }
  }

  async #tryAcquireOrRenew(now: number): Promise<Attempt> {
    const { leases, namespace, name, identity } = this.#o;
    const durationSeconds = Math.max(1, Math.round(this.#o.leaseDurationMs / 1000));
    const lease = await leases.getLease(namespace, name);
    this.#lastContact = now;
    if (!lease) {
      try {
        await leases.createLease({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        });
        return 'leading';
      } catch (err: unknown) {
        if (isConflict(err)) return 'failed';
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const record = `${holder}|${spec.renewTime ?? ''}|${spec.leaseDurationSeconds ?? ''}`;
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = now;
    }
    const heldMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder && holder !== identity && now < this.#observedAt + heldMs) return 'held';
    const mine = holder === identity;
    try {
      await leases.replaceLease({
        ...lease,
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
          renewTime: microTime(now),
          leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
        },
      });
      return 'leading';
    } catch (err: unknown) {
      if (isConflict(err)) return 'failed';
      throw err;
    }
  }

  /**
   * Steps down renewDeadline after the last renewal was sent, whatever the requests in
   * flight do: the renewal's own clock starts before its request, and the Lease lasts
   * leaseDuration (> renewDeadline) from then, so this replica has stopped before any
   * other may take over (client-go's fencing).
   */
  #armDeadline(renewedAt: number): void {
    clearTimeout(this.#deadline);
    const wait = Math.max(0, renewedAt + this.#o.renewDeadlineMs - this.#o.now());
    this.#deadline = setTimeout(() => {
      void this.#stepDown('renew deadline passed');
    }, wait);
    this.#deadline.unref();
  }

  #within(ms: number, attempt: Promise<Attempt>): Promise<Attempt> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Attempt>((resolve) => {
      timer = setTimeout(() => {
        this.#log?.warn({ lease: this.#o.name, timeoutMs: ms }, 'lease request timed out');
        resolve('failed');
      }, ms);
    });
    // a late answer is ignored: a renewal that lands late only extends a Lease nobody else holds
    attempt.catch(() => {});
    return Promise.race([attempt, timeout]).finally(() => clearTimeout(timer));
  }

  async #stepDown(why: string): Promise<void> {
    clearTimeout(this.#deadline);
    if (!this.#leader) return;
    this.#leader = false;
    this.#log?.info({ lease: this.#o.name, identity: this.#o.identity, why }, 'stopped leading');
    try {
      await this.#onStopped?.();
    } catch (err: unknown) {
      this.#log?.warn({ err: String(err) }, 'onStoppedLeading failed');
    }
  }

  /** Clears the holder so that a standby takes over without waiting for the Lease to expire. */
  async #release(): Promise<void> {
    const { leases, namespace, name, identity } = this.#o;
    try {
      const lease = await leases.getLease(namespace, name);
      if (!lease || lease.spec?.holderIdentity !== identity) return;
      const { holderIdentity: _released, ...rest } = lease.spec;
      await leases.replaceLease({
        ...lease,
        spec: { ...rest, leaseDurationSeconds: 1, renewTime: microTime(this.#o.now()) },
      });
      this.#log?.info({ lease: name, identity }, 'lease released');
    } catch (err: unknown) {
      this.#log?.warn(
        { lease: name, err: String(err) },
        'could not release the lease; it expires on its own',
      );
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}
