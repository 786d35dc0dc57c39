// Runs the queue: when a message is due its open recipients go out as jobs (one per domain,
// or one to the smarthost) under the connection limits. Each job's results are persisted as
// soon as it finishes, so a crash between two domains never re-sends to recipients already
// delivered. Then the message either leaves the queue or waits for its next attempt.
//
// Memory is kept to what is due, as Postfix's queue manager keeps it: a message waiting
// for its next attempt is only an id and a time in the scheduler; its envelope is read
// from disk when it is due. At most activeLimit messages are active (envelope in memory,
// attempt under way), like Postfix's qmgr_message_active_limit; due messages beyond that
// wait in due order. The spool is scanned in the background at start (QueueStore.scan),
// so a relay with a large queue takes mail at once.
import type { RelayConfig } from '../config/schema.ts';
import type { DsnAction } from '../delivery/dsn.ts';
import type { DeliveryJob, DsnRequest, RecipientResult, Transport } from '../delivery/types.ts';
import type { Logger } from '../observability/logger.ts';
import { ATTR, endSpan, relayTracer, SpanKind, startSpan, type Tracer } from '../observability/spans.ts';
import { copyEnvelope, type SpooledEnvelope, type SpooledRecipient, wantsNotice } from '../spool/envelope.ts';
import type { Spool } from '../spool/spool.ts';
import { KeyedSemaphore } from './concurrency.ts';
import { HoldArea } from './hold-area.ts';
import {
  arrivalOf,
  DEFAULT_PAGE,
  MAX_PAGE,
  MaxHeap,
  matchesEnvelope,
  PAGE_READ_BUDGET,
  type QueuePage,
  type QueueQuery,
  type QueueState,
  readAhead,
} from './listing.ts';
import { applyResults, completeResults, isOpen } from './outcomes.ts';
import { planJobs } from './plan-jobs.ts';
import type { QueueStore } from './queue-store.ts';
import { delayWarningDue, expiresAt, retryDelayMs } from './retry-schedule.ts';
import { mergeSorted, Scheduler, type Timer } from './scheduler.ts';

/** Metrics hooks; every call is optional to act on. */
export interface DeliveryObserver {
  /**
   * One per recipient per attempt, with the recipient's state after it, the class of the
   * answer (delivery/reply-class.ts) and the user who sent the message.
   */
  attempt(
    result: 'delivered' | 'deferred' | 'bounced',
    seconds: number,
    detail: { class: string; user: string; recipient: string; response: string },
  ): void;
  retryScheduled(): void;
  bounceGenerated(action: DsnAction): void;
}

export interface DeliveryManagerOptions {
  spool: Spool;
  queue: QueueStore;
  /** The current transport (a config reload swaps it); asked for each job. */
  transport: () => Transport;
  /** delivery.* is read on each use. */
  config: () => RelayConfig;
  /** Writes a bounce or delay notice into the spool; never called for a null sender or a DSN. */
  enqueueDsn: (request: DsnRequest) => Promise<void>;
  /** Wall-clock milliseconds (due times are persisted as ISO times); tests inject their own. */
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => Timer;
  logger: Logger;
  observer?: DeliveryObserver;
  /** delivery.attempt spans; the global API's tracer by default. */
  tracer?: Tracer;
  /** Messages active at once (envelope in memory, attempt under way); DEFAULT_ACTIVE_LIMIT by default. */
  activeLimit?: number;
  /** Bytes of just-received messages kept for their first attempt (default HELD_BODY_BYTES). */
  heldBodyBytes?: number;
  /** Longest synchronous slice of the scan at start (QueueStore.scan); 10 ms by default. */
  scanSliceMs?: number;
}

/**
 * Postfix's qmgr_message_active_limit is 20,000. An active message here costs about 30 KB
 * of heap while it waits for a connection (bench/README.md), and delivery opens at most
 * delivery.maxConnections (100) at once: 2,000 keeps every connection busy and the heap
 * small.
 */
export const DEFAULT_ACTIVE_LIMIT = 2_000;

/** Envelopes read from disk at once when many messages come due together (file descriptors). */
const LOADS_AT_ONCE = 32;

/** The connection slots' key for the smarthost (no domain or address literal looks like it). */
const SMARTHOST_SLOTS = '[smarthost]';

/**
 * Bytes of just-received messages kept in memory for their first attempt, so that it need
 * not read the file back (an open, a stat, a read and a close each). Past it, a message's
 * first attempt reads its file like any other.
 */
export const HELD_BODY_BYTES = 16 * 1024 * 1024;

function realTimer(fn: () => void, ms: number): Timer {
  const timer = setTimeout(fn, ms);
  // the listeners keep a relay alive; a pending retry alone must not
  timer.unref();
  return { cancel: () => clearTimeout(timer) };
}

/** One word for a job's results: delivered, deferred or bounced when they agree, else mixed. */
function attemptResult(results: readonly RecipientResult[]): string {
  const outcomes = new Set(results.map((r) => r.outcome));
  const [only] = outcomes;
  return outcomes.size === 1 && only ? only : outcomes.size === 0 ? 'empty' : 'mixed';
}

/** The server the results name first, and the first connection's addresses. */
function connection(results: readonly RecipientResult[]): {
  host?: string;
  remoteAddress?: string;
  localAddress?: string;
} {
  const host = results.find((r) => r.remoteHost !== undefined)?.remoteHost;
  const connected = results.find((r) => r.remoteAddress !== undefined);
  return {
    ...(host === undefined ? {} : { host }),
    ...(connected?.remoteAddress === undefined ? {} : { remoteAddress: connected.remoteAddress }),
    ...(connected?.localAddress === undefined ? {} : { localAddress: connected.localAddress }),
  };
}

/** The span's attributes for the server (OpenTelemetry semantic conventions). */
function remoteHost(results: readonly RecipientResult[]): Record<string, string> {
  const { host, remoteAddress, localAddress } = connection(results);
  return {
    ...(host === undefined ? {} : { 'server.address': host }),
    ...(remoteAddress === undefined ? {} : { 'network.peer.address': remoteAddress }),
    ...(localAddress === undefined ? {} : { 'network.local.address': localAddress }),
  };
}

/** Where an attempt went and, for a local failure, why: for its log line. */
function attemptContext(results: readonly RecipientResult[]): {
  remoteHost?: string;
  remoteAddress?: string;
  localAddress?: string;
  reason?: string;
} {
  const { host, ...addresses } = connection(results);
  const reason = results.find((r) => r.reason !== undefined)?.reason;
  return {
    ...(host === undefined ? {} : { remoteHost: host }),
    ...addresses,
    ...(reason === undefined ? {} : { reason }),
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class DeliveryManager {
  readonly #spool: Spool;
  readonly #queue: QueueStore;
  readonly #transport: () => Transport;
  readonly #config: () => RelayConfig;
  readonly #enqueueDsn: (request: DsnRequest) => Promise<void>;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #observer: DeliveryObserver | undefined;
  readonly #tracer: Tracer;
  readonly #scheduler: Scheduler;
  readonly #slots: KeyedSemaphore;
  /** Envelope reads under way: a pass of thousands of due messages opens a few files at a time. */
  readonly #loads = new KeyedSemaphore(() => ({ total: LOADS_AT_ONCE, perKey: LOADS_AT_ONCE }));
  /** The current envelope of every active message; replaced, never mutated. */
  readonly #envelopes = new Map<string, SpooledEnvelope>();
  /** Active messages (loading or being attempted), by queue id: a message has at most one attempt. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** The bytes of just-received messages for their first attempt (SpooledMessage.body). */
  readonly #bodies = new Map<string, readonly Buffer[]>();
  #bodyBytes = 0;
  /** Active messages removed through the API before their attempt got going. */
  readonly #removed = new Set<string>();
  /** What stop() found still queued: the hand-off reads them from disk. */
  #leftAtStop: ReadonlySet<string> = new Set();
  /** Active messages the scheduler handed out again while they were active. */
  readonly #again = new Set<string>();
  /** Held messages (hold-area.ts): in hold/, never scheduled until released. */
  readonly #hold: HoldArea;
  readonly #held = new Set<string>();
  /** Held messages being moved back (release): a second release of one is a no-op. */
  readonly #releasing = new Set<string>();
  readonly #activeLimit: number;
  readonly #heldBodyBytes: number;
  readonly #scanSliceMs: number | undefined;
  /** The oldest queue id, once known; undefined when it has to be found again. */
  #oldest: string | undefined;
  #scan: Promise<void> | undefined;
  #scanning = false;
  #unsubscribe: (() => void) | undefined;
  #started = false;
  #stopping = false;

  constructor(options: DeliveryManagerOptions) {
    this.#spool = options.spool;
    this.#queue = options.queue;
    this.#transport = options.transport;
    this.#config = options.config;
    this.#enqueueDsn = options.enqueueDsn;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.#observer = options.observer;
    this.#tracer = options.tracer ?? relayTracer();
    this.#activeLimit = options.activeLimit ?? DEFAULT_ACTIVE_LIMIT;
    this.#heldBodyBytes = options.heldBodyBytes ?? HELD_BODY_BYTES;
    this.#scanSliceMs = options.scanSliceMs;
    this.#hold = new HoldArea({
      spool: this.#spool,
      committer: this.#spool.committer,
      fsync: this.#spool.fsync,
    });
    this.#scheduler = new Scheduler({
      now: this.#now,
      setTimer: options.setTimer ?? realTimer,
      onDue: (ids) => {
        for (const id of ids) this.#begin(id);
      },
      room: () => this.#activeLimit - this.#inFlight.size,
    });
    this.#slots = new KeyedSemaphore(() => {
      const delivery = this.#config().delivery;
      return { total: delivery.maxConnections, perKey: delivery.maxConnectionsPerDomain };
    });
  }

  /**
   * Picks up every message committed from now on and starts the scan of the spool in the
   * background: it resolves at once, and `scanned` when the scan is done. Messages are
   * started as the scan finds them due.
   */
  async start(): Promise<void> {
    this.listen();
    this.startScan();
  }

  /**
   * Picks up every message committed from now on; call before any listener opens. The
   * scan (startScan) can then wait until the relay is serving: its slices would otherwise
   * come between the steps of the start and hold it up.
   */
  listen(): void {
    if (this.#started) throw new Error('delivery manager already started');
    this.#started = true;
    // held messages are known before the scan, which must neither start them nor take a
    // held message's envelope left in queue/ by a crash for a leftover
    for (const id of this.#hold.init(this.#now())) this.#held.add(id);
    // subscribed before the scan so a message committed meanwhile is not missed (ids dedupe)
    this.#unsubscribe = this.#spool.onCommitted((message) => {
      try {
        this.#accept(copyEnvelope(message.envelope), message.body);
      } catch (err: unknown) {
        this.#logger.error({ event: 'queue_error', queueId: message.queueId, err }, 'cannot queue message');
      }
    });
  }

  /** Starts the scan of the spool in the background (once); `scanned` resolves when it is done. */
  startScan(): void {
    if (this.#scan || this.#stopping) return;
    const started = performance.now();
    this.#scanning = true;
    this.#scan = this.#queue
      .scan(
        (queueId, dueAt) => {
          this.#found(queueId, dueAt);
        },
        { now: this.#now, ...(this.#scanSliceMs === undefined ? {} : { sliceMs: this.#scanSliceMs }) },
      )
      .finally(() => {
        this.#scanning = false;
      })
      .then(
        (messages) => {
          this.#logger.info(
            { event: 'queue_loaded', messages, seconds: (performance.now() - started) / 1000 },
            'queue loaded',
          );
          this.#scheduler.wake();
        },
        (err: unknown) => {
          // what was found is kept; what was not is found by the next start
          this.#logger.error({ event: 'queue_scan_failed', err }, 'cannot scan the queue');
        },
      );
  }

  /** Resolves when the scan of the spool that start() began is done. */
  get scanned(): Promise<void> {
    return this.#scan ?? Promise.resolve();
  }

  /** The scan at start is still going: size and listings cover only what it found so far. */
  get scanning(): boolean {
    return this.#scanning;
  }

  /** A message committed now: started at once with the envelope in hand when there is room. */
  #accept(envelope: SpooledEnvelope, body: readonly Buffer[] | undefined): void {
    const { queueId } = envelope;
    if (this.#stopping || this.#known(queueId) || this.#held.has(queueId)) return;
    this.#noteArrival(queueId);
    // due messages waiting for room go first
    const waiting = (this.#scheduler.nextDueAt() ?? Number.POSITIVE_INFINITY) <= this.#now();
    if (this.#inFlight.size < this.#activeLimit && !waiting) {
      this.#queue.noteCommitted(queueId);
      this.#begin(queueId, envelope, body);
    } else {
      // read again from disk when its turn comes
      this.#scheduler.schedule(queueId, this.#now());
      this.#scheduler.wake();
    }
  }

  /** A message the scan found; due at dueAt, or at its arrival (due now, oldest first). */
  #found(queueId: string, dueAt: number | undefined): void {
    if (this.#stopping || this.#known(queueId) || this.#held.has(queueId)) return;
    this.#noteArrival(queueId);
    const now = this.#now();
    // no retry is set further ahead than the queue lifetime: a time beyond is no schedule
    // of ours (a clock set back, a file written by hand), and the message is due now
    const { maxBackoffSeconds, queueLifetimeSeconds } = this.#config().delivery.retry;
    const latest = now + Math.max(maxBackoffSeconds, queueLifetimeSeconds) * 1000;
    if (dueAt !== undefined && dueAt <= latest) {
      this.#scheduler.schedule(queueId, dueAt);
      return;
    }
    const arrival = arrivalOf(queueId);
    this.#scheduler.schedule(queueId, Number.isNaN(arrival) ? now : Math.min(arrival, now));
  }

  #known(queueId: string): boolean {
    return this.#inFlight.has(queueId) || this.#scheduler.has(queueId);
  }

  #noteArrival(queueId: string): void {
    if (this.#oldest !== undefined && queueId < this.#oldest) this.#oldest = queueId;
    if (this.size === 0) this.#oldest = queueId;
  }

  /** Makes one message (or every message) due now; false if that message is not queued. */
  retryNow(queueId?: string): boolean {
    return this.retryCount(queueId) !== undefined;
  }

  /** retryNow() that says how many messages it made due (undefined: unknown, or stopping). */
  retryCount(queueId?: string): number | undefined {
    if (this.#stopping) return undefined;
    if (queueId !== undefined && !this.#known(queueId)) return undefined;
    const now = this.#now();
    // a message in flight is being tried right now; its next schedule follows that attempt
    if (queueId !== undefined) {
      const inFlight = this.#inFlight.has(queueId);
      if (!inFlight) this.#scheduler.schedule(queueId, now);
      this.#scheduler.wake();
      return inFlight ? 0 : 1;
    }
    // everything: one pass over the schedule (a million ids in tens of ms), then the few
    // in flight that are scheduled already get their own schedule back
    const kept: Array<[string, number]> = [];
    for (const id of this.#inFlight.keys()) {
      const dueAt = this.#scheduler.dueAt(id);
      if (dueAt !== undefined) kept.push([id, dueAt]);
    }
    const count = this.#scheduler.rescheduleAll(now) - kept.length;
    for (const [id, dueAt] of kept) this.#scheduler.schedule(id, dueAt);
    this.#scheduler.wake();
    return count;
  }

  /** Whether a message is on hold. */
  isHeld(queueId: string): boolean {
    return this.#held.has(queueId);
  }

  /** Messages on hold. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * Puts a queued message on hold (Postfix's `postsuper -h`): it leaves the schedule and
   * moves to hold/, so nothing attempts it, now or after a restart, until it is released.
   * An attempt under way is let finish first. True when it is held (or already was), false
   * when it is not queued, undefined when the queue is stopping.
   */
  async hold(queueId: string): Promise<boolean | undefined> {
    if (this.#held.has(queueId)) return true;
    // the attempt under way decides the state the message is held in
    for (let run = this.#inFlight.get(queueId); run; run = this.#inFlight.get(queueId)) await run;
    if (this.#held.has(queueId)) return true;
    if (this.#stopping) return undefined;
    if (!this.#scheduler.has(queueId)) return false;
    // from here to the renames nothing awaits: no attempt can start in between
    this.#scheduler.remove(queueId);
    this.#held.add(queueId);
    this.#left(queueId);
    try {
      await this.#hold.hold(queueId);
    } catch (err: unknown) {
      this.#held.delete(queueId);
      this.#scheduler.schedule(queueId, this.#now());
      this.#scheduler.wake();
      throw err;
    } finally {
      this.#queue.forget(queueId);
    }
    this.#logger.info({ event: 'held', queueId }, 'message put on hold');
    return true;
  }

  /**
   * Releases a held message (Postfix's `postsuper -H`): back in the queue, due now. False
   * when it is not held, undefined when the queue is stopping.
   */
  async release(queueId: string): Promise<boolean | undefined> {
    if (!this.#held.has(queueId)) return false;
    if (this.#stopping) return undefined;
    if (this.#releasing.has(queueId)) return true;
    this.#releasing.add(queueId);
    try {
      await this.#hold.release(queueId, this.#now());
    } finally {
      this.#releasing.delete(queueId);
    }
    this.#held.delete(queueId);
    this.#logger.info({ event: 'released', queueId }, 'message released from hold');
    if (this.#stopping) return true; // found in queue/ by the next start
    this.#noteArrival(queueId);
    this.#scheduler.schedule(queueId, this.#now());
    this.#scheduler.wake();
    return true;
  }

  /** Takes a message out of the queue without delivering it further; false if it is not queued. */
  async remove(queueId: string): Promise<boolean> {
    if (this.#held.has(queueId) && !this.#releasing.has(queueId)) {
      this.#held.delete(queueId);
      await this.#hold.remove(queueId);
      this.#logger.info({ event: 'removed', queueId, held: true }, 'held message removed from the queue');
      return true;
    }
    if (!this.#known(queueId)) return false;
    this.#scheduler.remove(queueId);
    if (this.#inFlight.has(queueId)) this.#removed.add(queueId);
    this.#envelopes.delete(queueId);
    this.#left(queueId);
    await this.#queue.remove(queueId);
    this.#logger.info({ event: 'removed', queueId }, 'message removed from the queue');
    return true;
  }

  /** One page of the queue, oldest first (by queue id, which sorts by arrival). */
  async list(query: QueueQuery = {}): Promise<QueuePage> {
    const limit = Math.min(Math.max(Math.floor(query.limit ?? DEFAULT_PAGE), 1), MAX_PAGE);
    const sender = query.sender?.toLowerCase();
    const domain = query.domain?.toLowerCase();
    const readsEnvelope = sender !== undefined || domain !== undefined;
    const messages: QueuePage['messages'] = [];
    let after = query.after ?? '';
    let read = 0;
    for (;;) {
      // the cheap filters (arrival, state) on the ids alone; then envelopes for the rest
      const batch = this.#idsAfter(after, readsEnvelope ? Math.min(limit * 2, 500) : limit, (id) =>
        this.#matchesIndex(id, query),
      );
      // read a few at a time: the thread pool reads them side by side
      const envelopes = await readAhead(batch, (id) => this.#current(id));
      for (const [i, id] of batch.entries()) {
        after = id;
        const envelope = envelopes[i];
        read++;
        if (envelope === undefined) continue; // gone meanwhile
        if (!matchesEnvelope(envelope, sender, domain)) {
          if (read >= PAGE_READ_BUDGET) break;
          continue;
        }
        messages.push({ ...envelope, state: this.#stateOf(id) });
        if (messages.length >= limit || read >= PAGE_READ_BUDGET) break;
      }
      if (batch.length === 0) return { messages, total: this.size + this.held, next: null };
      if (messages.length >= limit || read >= PAGE_READ_BUDGET) {
        return { messages, total: this.size + this.held, next: after };
      }
    }
  }

  /** Up to k ids after `after`, smallest first, among those `keep` keeps (one pass, a bounded heap). */
  #idsAfter(after: string, k: number, keep: (id: string) => boolean): string[] {
    const heap = new MaxHeap(k);
    const consider = (id: string) => {
      if (id > after && heap.wants(id) && keep(id)) heap.offer(id);
    };
    // the k smallest of the schedule, found on its numbers, then the few others
    for (const id of this.#scheduler.smallestAfter(after, k, keep)) if (heap.wants(id)) heap.offer(id);
    for (const id of this.#inFlight.keys()) consider(id);
    for (const id of this.#held) consider(id);
    return heap.sorted();
  }

  #matchesIndex(id: string, query: QueueQuery): boolean {
    if (query.receivedBefore !== undefined || query.receivedAfter !== undefined) {
      const at = arrivalOf(id);
      if (query.receivedBefore !== undefined && !(at <= query.receivedBefore)) return false;
      if (query.receivedAfter !== undefined && !(at >= query.receivedAfter)) return false;
    }
    return query.state === undefined || this.#stateOf(id) === query.state;
  }

  #stateOf(id: string): QueueState {
    if (this.#held.has(id)) return 'held';
    if (this.#inFlight.has(id)) return 'active';
    const dueAt = this.#scheduler.dueAt(id);
    return dueAt !== undefined && dueAt > this.#now() ? 'deferred' : 'due';
  }

  /** A queued message's envelope: the one in memory when it is active, else the one on disk. */
  async #current(queueId: string): Promise<SpooledEnvelope | undefined> {
    const active = this.#envelopes.get(queueId);
    if (active) return copyEnvelope(active);
    if (this.#held.has(queueId)) return this.#hold.peek(queueId);
    // the hand-off reads every id stop() gave, whether or not its attempt got going
    if (!this.#known(queueId) && !this.#leftAtStop.has(queueId)) return undefined;
    return this.#queue.peek(queueId);
  }

  /** A queued message's envelope (read from disk unless it is active), or undefined if it is not queued. */
  async get(queueId: string): Promise<SpooledEnvelope | undefined> {
    return this.#current(queueId);
  }

  /** Messages in the queue: waiting and active (held ones are counted apart: held). */
  get size(): number {
    return this.#scheduler.size + this.#inFlight.size;
  }

  /** Messages active now (envelope in memory, attempt under way). */
  get active(): number {
    return this.#inFlight.size;
  }

  /** Where a queued message's body is. */
  bodyPath(queueId: string): string {
    return this.#queue.bodyPath(queueId);
  }

  /** When the oldest queued message arrived (ms since the epoch), from the queue ids. */
  oldestReceivedAt(): number | undefined {
    if (this.size === 0) return undefined;
    if (this.#oldest === undefined) {
      // found again only after the oldest left: one pass over the ids
      let oldest = this.#scheduler.smallestId();
      for (const id of this.#inFlight.keys()) if (oldest === undefined || id < oldest) oldest = id;
      this.#oldest = oldest;
    }
    const at = this.#oldest === undefined ? Number.NaN : arrivalOf(this.#oldest);
    return Number.isNaN(at) ? undefined : at;
  }

  /** A message left the queue (or its attempt ended): the oldest is found again if it was this one. */
  #left(queueId: string): void {
    if (this.#oldest === queueId) this.#oldest = undefined;
  }

  /** Stops starting new attempts; waits for attempts in flight (up to deadlineMs); returns the ids still queued. */
  async stop(deadlineMs: number): Promise<string[]> {
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#scheduler.stop();
    // jobs still waiting for a connection slot are not started; their recipients stay as they were
    this.#slots.close();
    this.#loads.close();
    const running = Promise.allSettled(this.#inFlight.values());
    // wall-clock, not the injected clock: this bounds a real shutdown
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([running, deadline]);
    clearTimeout(timer);
    // waiting (the schedule keeps them after stop), active, and active ones whose envelope
    // was still being read; the schedule is sorted on its numbers and the few others merged
    // in, so a million queued cost no Set and no sort of strings at shutdown
    this.#leftAtStop = new Set([...this.#envelopes.keys(), ...this.#inFlight.keys()]);
    const others = [...this.#leftAtStop].filter((id) => !this.#scheduler.has(id)).sort();
    return mergeSorted(this.#scheduler.sortedIds(), others);
  }

  /** A due message's envelope from disk, a few reads at a time; undefined once stopping. */
  async #load(queueId: string): Promise<SpooledEnvelope | undefined> {
    const release = await this.#loads.acquire('load');
    if (!release) return undefined;
    try {
      return await this.#queue.load(queueId);
    } finally {
      release();
    }
  }

  /** Makes a message active: its envelope (given, or read from disk), then its attempt. */
  #begin(queueId: string, given?: SpooledEnvelope, body?: readonly Buffer[]): void {
    if (this.#stopping) return;
    if (this.#inFlight.has(queueId)) {
      // made due again before its attempt finished: it is scheduled again when that has
      this.#again.add(queueId);
      return;
    }
    const held = given && body && this.#bodyBytes + given.size <= this.#heldBodyBytes ? given.size : 0;
    if (held > 0 && body) {
      this.#bodies.set(queueId, body);
      this.#bodyBytes += held;
    }
    const run = (given ? Promise.resolve(given) : this.#load(queueId))
      .then((envelope) => {
        // gone meanwhile, quarantined, or removed while it was read
        if (envelope === undefined || this.#removed.has(queueId)) {
          this.#left(queueId);
          return;
        }
        this.#envelopes.set(queueId, envelope);
        return this.#attempt(queueId);
      })
      .catch((err: unknown) => {
        this.#logger.error({ event: 'delivery_error', queueId, err }, 'delivery attempt failed');
        // retry later rather than leave the message stranded without a schedule
        const retry = this.#config().delivery.retry;
        if (this.#envelopes.has(queueId) && !this.#stopping)
          this.#scheduler.schedule(queueId, this.#now() + retryDelayMs(1, retry));
      })
      .finally(() => {
        this.#inFlight.delete(queueId);
        this.#removed.delete(queueId);
        if (this.#again.delete(queueId) && this.#envelopes.has(queueId) && !this.#scheduler.has(queueId)) {
          this.#scheduler.schedule(queueId, this.#now());
        }
        // a message that waits for its next attempt keeps nothing in memory but its schedule
        if (held > 0 && this.#bodies.delete(queueId)) this.#bodyBytes -= held;
        if (!this.#stopping) this.#envelopes.delete(queueId);
        this.#queue.forget(queueId);
        this.#scheduler.wake();
      });
    this.#inFlight.set(queueId, run);
  }

  async #attempt(queueId: string): Promise<void> {
    const envelope = this.#envelopes.get(queueId);
    if (!envelope) return;
    const bodyPath = this.#queue.bodyPath(queueId);
    const jobs = planJobs(envelope, this.#config().delivery, bodyPath);
    const body = this.#bodies.get(queueId);
    if (body) for (const job of jobs) job.body = body;
    // bounces recorded before a crash whose notice was never queued are reported now
    const bounced: SpooledRecipient[] = envelope.recipients.filter(
      (r) => r.state === 'bounced' && !r.notified,
    );
    const ran = await Promise.all(jobs.map((job) => this.#runJob(job, bounced)));
    const current = this.#envelopes.get(queueId);
    if (!current) return; // removed while in flight
    // a notice that could not be written (a full spool) keeps the message until it is
    let noticeOwed = false;
    if (bounced.length > 0) noticeOwed = !(await this.#notify(current, bounced, 'failed', bodyPath));
    // NOTIFY=SUCCESS to a next hop that took no DSN request: this relay says it was relayed
    const relayed = current.recipients.filter(
      (r) => r.state === 'delivered' && !r.notified && !r.dsnPassed && wantsNotice(r, 'relayed'),
    );
    if (relayed.length > 0) {
      noticeOwed = !(await this.#notify(current, relayed, 'relayed', bodyPath)) || noticeOwed;
    }
    // stopped before every job got a connection: the attempt does not count
    if (ran.includes(false)) return;
    if (!current.recipients.some(isOpen) && !noticeOwed) {
      await this.#finish(current);
      return;
    }
    await this.#defer(current, bodyPath);
  }

  /** Runs one job; false if it never started because the manager is stopping. */
  async #runJob(job: DeliveryJob, bounced: SpooledRecipient[]): Promise<boolean> {
    // a job's slot is its destination's: the recipient domain, or the smarthost, which takes
    // every domain's mail over at most maxConnectionsPerDomain connections. The transport's
    // pool keeps to the same limit, so a job waits here, before its file is opened or read
    // and before its attempt's time starts, rather than inside the transport.
    const release = await this.#slots.acquire(
      this.#config().delivery.mode === 'smarthost' ? SMARTHOST_SLOTS : job.domain,
    );
    if (!release) return false;
    if (this.#stopping) {
      release();
      return false;
    }
    const started = performance.now();
    // one trace per attempt; the queue id ties it to the transaction that accepted the message
    const span = startSpan(
      this.#tracer,
      'delivery.attempt',
      undefined,
      {
        [ATTR.queueId]: job.queueId,
        'sluice.delivery.domain': job.domain,
        [ATTR.recipients]: job.recipients.length,
        'sluice.delivery.attempt': (this.#envelopes.get(job.queueId)?.attempts ?? 0) + 1,
      },
      SpanKind.CLIENT,
    );
    let results: RecipientResult[];
    try {
      results = completeResults(
        job.recipients,
        await this.#transport().deliver(job),
        'local error: the transport gave no result for this recipient',
      );
    } catch (err: unknown) {
      // a transport must not reject; if one does, nobody bounces for a local bug
      this.#logger.error(
        { event: 'transport_error', queueId: job.queueId, domain: job.domain, err },
        'transport failed',
      );
      results = completeResults(job.recipients, [], `local error: ${errorText(err)}`);
    } finally {
      release();
    }
    endSpan(span, attemptResult(results), {
      'sluice.delivery.delivered': results.filter((r) => r.outcome === 'delivered').length,
      'sluice.delivery.deferred': results.filter((r) => r.outcome === 'deferred').length,
      'sluice.delivery.bounced': results.filter((r) => r.outcome === 'bounced').length,
      ...remoteHost(results),
    });
    await this.#record(job, results, (performance.now() - started) / 1000, bounced);
    return true;
  }

  /** Applies one job's results and persists them before anything else happens to the message. */
  async #record(
    job: DeliveryJob,
    results: RecipientResult[],
    seconds: number,
    bounced: SpooledRecipient[],
  ): Promise<void> {
    const { queueId } = job;
    const current = this.#envelopes.get(queueId);
    const counts = { delivered: 0, deferred: 0, bounced: 0 };
    if (!current) {
      for (const r of results) counts[r.outcome]++;
      this.#logger.info(
        {
          event: 'delivery_attempt',
          queueId,
          domain: job.domain,
          recipients: job.recipients.length,
          results: counts,
          seconds,
          removed: true,
        },
        'delivery attempt (message removed meanwhile)',
      );
      return;
    }
    const applied = applyResults(current, results, this.#now(), this.#config().delivery.retry);
    this.#envelopes.set(queueId, applied.envelope);
    bounced.push(...applied.newlyBounced);
    const byAddress = new Map(applied.envelope.recipients.map((r) => [r.address, r]));
    const deferrals = new Set<string>();
    for (const result of results) {
      const recipient = byAddress.get(result.address);
      if (!recipient || recipient.state === 'pending') continue;
      counts[recipient.state]++;
      const cls = recipient.class ?? 'other';
      this.#observer?.attempt(recipient.state, seconds, {
        class: cls,
        user: current.user,
        recipient: recipient.address,
        response: recipient.response ?? '',
      });
      if (recipient.state === 'deferred') deferrals.add(recipient.response ?? '');
      this.#logger.info(
        {
          event: recipient.state,
          queueId,
          recipient: recipient.address,
          response: recipient.response,
          status: recipient.status,
          class: cls,
          remoteHost: recipient.remoteHost,
          remoteAddress: result.remoteAddress,
          localAddress: result.localAddress,
        },
        recipient.state,
      );
    }
    this.#logger.info(
      {
        event: 'delivery_attempt',
        queueId,
        domain: job.domain,
        recipients: job.recipients.length,
        results: counts,
        ...attemptContext(results),
        ...(deferrals.size > 0 ? { deferrals: [...deferrals] } : {}),
        attempt: (current.attempts ?? 0) + 1,
        seconds,
      },
      'delivery attempt',
    );
    // Every recipient delivered: the message is removed next (#finish), and writing its
    // envelope first would cost a write, an fsync and a rename for nothing. A crash between
    // the remote 250 and the removal can repeat the delivery either way; the write would
    // only have narrowed that window by the time one unlink takes.
    if (applied.envelope.recipients.every((r) => r.state === 'delivered')) return;
    try {
      // due now should this be the last word before a crash
      await this.#queue.update(applied.envelope, this.#now());
    } catch (err: unknown) {
      // the next write of this message carries the same state; until then a crash may re-send
      this.#logger.error({ event: 'queue_write_failed', queueId, err }, 'cannot persist delivery results');
    }
  }

  async #finish(envelope: SpooledEnvelope): Promise<void> {
    const { queueId } = envelope;
    // every job has closed the file and every notice has been written from it
    await this.#queue.remove(queueId, { done: true });
    this.#envelopes.delete(queueId);
    this.#scheduler.remove(queueId);
    this.#inFlight.delete(queueId);
    this.#left(queueId);
    const delivered = envelope.recipients.filter((r) => r.state === 'delivered').length;
    const bounced = envelope.recipients.filter((r) => r.state === 'bounced').length;
    this.#logger.info({ event: 'message_done', queueId, delivered, bounced }, 'message left the queue');
  }

  async #defer(current: SpooledEnvelope, bodyPath: string): Promise<void> {
    const { queueId } = current;
    // every recipient is done: only a notice is still to be written
    const noticeOnly = !current.recipients.some(isOpen);
    const retry = this.#config().delivery.retry;
    const now = this.#now();
    const attempts = (current.attempts ?? 0) + 1;
    // never wait past the end of the queue lifetime: the expiry bounce comes on time (a
    // notice still to be written has no such deadline, and must not be retried at once)
    const dueAt = noticeOnly
      ? now + retryDelayMs(attempts, retry)
      : Math.min(
          now + retryDelayMs(attempts, retry),
          Math.max(now, expiresAt(new Date(current.receivedAt), retry)),
        );
    let next: SpooledEnvelope = { ...current, attempts, nextAttemptAt: new Date(dueAt).toISOString() };
    if (delayWarningDue(next, now, retry)) {
      // only those whose NOTIFY asks for delays (or who gave none)
      const deferred = next.recipients.filter((r) => r.state === 'deferred' && wantsNotice(r, 'delayed'));
      if (deferred.length === 0 || (await this.#requestDsn(next, deferred, 'delayed', bodyPath))) {
        next = { ...next, delayWarned: true };
      }
    }
    if (!this.#envelopes.has(queueId)) return; // removed while the notice was written
    this.#envelopes.set(queueId, next);
    try {
      await this.#queue.update(next, dueAt);
    } catch (err: unknown) {
      this.#logger.error({ event: 'queue_write_failed', queueId, err }, 'cannot persist retry schedule');
    }
    if (this.#stopping || !this.#envelopes.has(queueId)) return;
    this.#scheduler.schedule(queueId, dueAt);
    this.#observer?.retryScheduled();
    this.#logger.info(
      { event: 'retry_scheduled', queueId, attempts, nextAttemptAt: next.nextAttemptAt },
      'retry scheduled',
    );
  }

  /**
   * The failure or relay notice for these recipients, for those whose NOTIFY asks for it;
   * each is marked notified once that is settled. False when a notice was owed and could
   * not be written.
   */
  async #notify(
    envelope: SpooledEnvelope,
    recipients: readonly SpooledRecipient[],
    action: 'failed' | 'relayed',
    bodyPath: string,
  ): Promise<boolean> {
    if (!getsNotices(envelope)) return true;
    const wanted = recipients.filter((r) => wantsNotice(r, action));
    const written = wanted.length === 0 || (await this.#requestDsn(envelope, wanted, action, bodyPath));
    // those who asked for no notice are settled all the same; the others once it is written
    const settled = new Set(
      recipients.filter((r) => written || !wantsNotice(r, action)).map((r) => r.address),
    );
    for (const r of envelope.recipients) if (settled.has(r.address)) r.notified = true;
    return written;
  }

  /** Asks for a notice; a null sender or a DSN never gets one (getsNotices). */
  async #requestDsn(
    envelope: SpooledEnvelope,
    recipients: SpooledRecipient[],
    action: DsnAction,
    bodyPath: string,
  ): Promise<boolean> {
    if (!getsNotices(envelope) || recipients.length === 0) return false;
    try {
      await this.#enqueueDsn({ envelope, recipients, action, bodyPath });
    } catch (err: unknown) {
      this.#logger.error(
        { event: 'dsn_failed', queueId: envelope.queueId, action, err },
        'cannot queue a DSN',
      );
      return false;
    }
    this.#observer?.bounceGenerated(action);
    this.#logger.info(
      { event: 'dsn_queued', queueId: envelope.queueId, action, recipients: recipients.length },
      'delivery status notification queued',
    );
    return true;
  }
}

/** Whether a message's sender is told about it: not for a bounce (null sender) or a DSN. */
function getsNotices(envelope: SpooledEnvelope): boolean {
  return envelope.sender !== '' && !envelope.dsn;
}
