// Test support for the queue: a fake clock, a fake transport and a manager wired to a real
// spool in a temporary directory. The transport is a fake on purpose: these tests are about
// the queue's bookkeeping; the real SMTP transports have their own tests against real peers.
import { embeddedConfig } from '../config/defaults.ts';
import type { RelayConfig } from '../config/schema.ts';
import type {
  DeliveryJob,
  DsnRequest,
  RecipientOutcome,
  RecipientResult,
  Transport,
} from '../delivery/types.ts';
import { createLogger } from '../observability/logger.ts';
import { DeliveryManager } from '../queue/delivery-manager.ts';
import { QueueStore } from '../queue/queue-store.ts';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { readSpooled } from '../spool/message-file.ts';
import { spooledEnvelope } from './envelope.ts';
import { testSpool } from './spools.ts';

export const T0 = Date.parse('2025-01-01T00:00:00Z');

/** A clock and timers that move only when the test says so. */
export class FakeClock {
  now = T0;
  readonly timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  setTimer = (fn: () => void, ms: number) => {
    const timer = { at: this.now + ms, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  };
  /** Moves time forward, firing every timer that comes due on the way, in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = this.timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.now = Math.max(this.now, next.at);
      next.cancelled = true;
      next.fn();
    }
    this.now = end;
  }
  /** Sets the clock to an absolute time (forward only). */
  advanceTo(at: number): void {
    this.advance(at - this.now);
  }
}

const REPLIES: Record<RecipientOutcome, [string, string]> = {
  delivered: ['250 2.0.0 Ok: queued', '2.0.0'],
  deferred: ['451 4.3.0 try again later', '4.3.0'],
  bounced: ['550 5.1.1 no such user', '5.1.1'],
};

/** Records every job and answers each recipient by its address; can hold or hang jobs. */
export class FakeTransport implements Transport {
  readonly jobs: DeliveryJob[] = [];
  inFlight = 0;
  maxInFlight = 0;
  readonly maxPerDomain = new Map<string, number>();
  readonly #perDomain = new Map<string, number>();
  /** While set, every job waits for it before answering. */
  gate: Promise<void> | undefined;
  /** Jobs to these domains never answer (a connection that hangs through a crash). */
  readonly hang = new Set<string>();
  /** Jobs to these domains throw (a transport breaking its contract). */
  readonly fail = new Set<string>();
  /** These domains offer DSN: a job's DSN request is passed on (RecipientResult.dsnPassed). */
  readonly offersDsn = new Set<string>();
  outcome: (address: string) => RecipientOutcome;

  constructor(outcome: (address: string) => RecipientOutcome = () => 'delivered') {
    this.outcome = outcome;
  }

  sentTo(): string[] {
    return this.jobs.flatMap((j) => j.recipients);
  }

  /** Holds every job from now on until the function returned is called. */
  hold(): () => void {
    let open = () => {};
    this.gate = new Promise((resolve) => {
      open = resolve;
    });
    return open;
  }

  async deliver(job: DeliveryJob): Promise<RecipientResult[]> {
    this.jobs.push(structuredClone(job));
    const inDomain = (this.#perDomain.get(job.domain) ?? 0) + 1;
    this.#perDomain.set(job.domain, inDomain);
    this.maxPerDomain.set(job.domain, Math.max(this.maxPerDomain.get(job.domain) ?? 0, inDomain));
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      if (this.hang.has(job.domain)) await new Promise(() => {});
      if (this.gate) await this.gate;
      if (this.fail.has(job.domain)) throw new Error('connection pool exploded');
      return job.recipients.map((address) => {
        const outcome = this.outcome(address);
        const [response, status] = REPLIES[outcome];
        const reason = outcome === 'deferred' ? { reason: 'fake_deferral' } : {};
        const passed =
          outcome === 'delivered' && job.dsn && this.offersDsn.has(job.domain) ? { dsnPassed: true } : {};
        return { address, outcome, response, status, remoteHost: `mx.${job.domain}`, ...reason, ...passed };
      });
    } finally {
      this.inFlight--;
      this.#perDomain.set(job.domain, (this.#perDomain.get(job.domain) ?? 1) - 1);
    }
  }

  async close(): Promise<void> {}
}

export function testConfig(
  dir: string,
  delivery: Partial<RelayConfig['delivery']> = {},
  retry: Partial<RelayConfig['delivery']['retry']> = {},
): RelayConfig {
  const base = embeddedConfig(dir);
  return {
    ...base,
    delivery: { ...base.delivery, ...delivery, retry: { ...base.delivery.retry, ...retry } },
  };
}

export function testEnvelope(
  queueId: string,
  addresses: string[],
  receivedAt: number,
  extra: Partial<SpooledEnvelope> = {},
): SpooledEnvelope {
  return spooledEnvelope({
    queueId,
    receivedAt: new Date(receivedAt).toISOString(),
    recipients: addresses.map((address): SpooledRecipient => ({ address, state: 'pending' })),
    size: 4,
    ...extra,
  });
}

export interface ObservedMetrics {
  attempts: string[];
  retries: number;
  notices: string[];
}

/** One relay's queue on spoolDir: a real spool and store, the given transport and clock (the scan in one slice unless `limits` says otherwise). */
export async function bootQueue(
  spoolDir: string,
  transport: Transport,
  clock: FakeClock,
  config: RelayConfig,
  limits: { activeLimit?: number; scanSliceMs?: number; heldBodyBytes?: number } = {},
) {
  const spool = testSpool({ dir: spoolDir });
  await spool.init();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const queue = new QueueStore({ spool, committer: spool.committer, fsync: true, logger });
  const dsn: DsnRequest[] = [];
  /** The next this many notices fail to be written, as on a full spool. */
  const dsnFailures = { left: 0 };
  const metrics: ObservedMetrics = { attempts: [], retries: 0, notices: [] };
  const manager = new DeliveryManager({
    spool,
    queue,
    transport: () => transport,
    config: () => config,
    enqueueDsn: async (request) => {
      if (dsnFailures.left > 0) {
        dsnFailures.left--;
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
      dsn.push(structuredClone(request));
    },
    now: () => clock.now,
    setTimer: clock.setTimer,
    // the spool scan in one slice unless a test asks for slices: on a busy machine a 10 ms
    // slice finds some of the queued messages, and which of them goes first then depends
    // on the machine, not on the queue's order
    scanSliceMs: 60_000,
    ...limits,
    logger,
    observer: {
      attempt: (result) => void metrics.attempts.push(result),
      retryScheduled: () => void metrics.retries++,
      bounceGenerated: (action) => void metrics.notices.push(action),
    },
  });
  return {
    spool,
    queue,
    manager,
    logs,
    dsn,
    dsnFailures,
    metrics,
    events: (event: string) => logs.filter((l) => l.event === event),
    /** Writes a message through the real spool (as the SMTP side does). */
    async submit(envelope: SpooledEnvelope): Promise<void> {
      const writer = spool.createWriter(envelope.queueId);
      writer.end('body');
      await writer.commit(envelope);
    },
    /** The envelope as it is on disk now, or undefined once the message is gone. */
    async onDisk(queueId: string): Promise<SpooledEnvelope | undefined> {
      try {
        return (await readSpooled(spool.queueDir, queueId)).envelope as SpooledEnvelope;
      } catch {
        return undefined;
      }
    },
  };
}

/** Lets every promise continuation that is already queued run (not a sleep: no time passes). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
