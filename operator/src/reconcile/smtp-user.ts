// The status of each SmtpUser, from what the policy's reconcile made of it: Ready True
// (Active or Suspended) or False with the reason (PolicyNotFound, NotSelected, SecretNotFound,
// DuplicateUsername, ReservedUsername, InvalidPasswordHash, AbuseSuspended) and a Warning Event when a user
// stops being ready; with the relays' usage report also status.usage and the
// AbuseSuspected condition, with a Warning Event when abuse is first suspected.
// Each user is written on its own: one user's problem never holds back the others.
import type { SmtpUser } from '../api/types.ts';
import type { Outcome } from '../build/users.ts';
import type { KubeClient } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { SMTP_USERS } from '../kube/resources.ts';
import type { PolicyUsage } from '../usage/relay-usage.ts';
import {
  type ConditionInput,
  findCondition,
  type LiveCondition,
  mergeConditions,
  statusHolds,
} from './conditions.ts';
import { StatusWriter, type WithStatus } from './status-writer.ts';
import { UsagePacer } from './usage-pacer.ts';
import { abuseCondition, type SmtpUserUsage, userUsage, withAbuseSuspension } from './user-usage.ts';

const STATUS_CONCURRENCY = 8;

// each usage report (a new object per fetch) gets a number, for the unchanged-user check
const usageVersions = new WeakMap<PolicyUsage, number>();
let nextUsageVersion = 0;
function usageVersion(usage: PolicyUsage): number {
  let v = usageVersions.get(usage);
  if (v === undefined) {
    v = ++nextUsageVersion;
    usageVersions.set(usage, v);
  }
  return v;
}

// each distinct outcome gets a number, so what is remembered per user is short (100,000 users)
const outcomeIds = new Map<string, number>();
let nextOutcomeId = 0;
function outcomeId(outcome: Outcome): number {
  const key = `${outcome.ok}|${outcome.reason}|${outcome.message}`;
  let id = outcomeIds.get(key);
  if (id === undefined) {
    // numbers are never reused, so forgetting them all only costs a comparison per user
    if (outcomeIds.size >= 10_000) outcomeIds.clear();
    id = ++nextOutcomeId;
    outcomeIds.set(key, id);
  }
  return id;
}

export function policyNotFound(policyName: string, namespace: string): Outcome {
  return {
    ok: false,
    reason: 'PolicyNotFound',
    message: `RelayPolicy ${policyName} not found in namespace ${namespace}; create it or fix spec.policyRef.name`,
  };
}

/**
 * The status to write. With the relays' usage (`usage`) it carries status.usage and the
 * AbuseSuspected condition; without it (not fetched yet, relays unreachable) the live
 * AbuseSuspected condition is kept as it is and status.usage is left alone.
 */
export function smtpUserStatus(
  user: SmtpUser,
  outcome: Outcome,
  previous: readonly LiveCondition[] | undefined,
  now: string,
  usage?: PolicyUsage,
): { observedGeneration: number; conditions: ReturnType<typeof mergeConditions>; usage?: SmtpUserUsage } {
  const generation = user.metadata.generation ?? 0;
  const username = user.spec.username;
  const ready = withAbuseSuspension(outcome, username, usage);
  const conditions: ConditionInput[] = [
    {
      type: 'Ready',
      status: ready.ok ? 'True' : 'False',
      reason: ready.reason,
      message: ready.message,
      observedGeneration: generation,
    },
  ];
  const kept = findCondition(previous, 'AbuseSuspected');
  if (usage) conditions.push(abuseCondition(username, usage, generation));
  else if (kept) conditions.push(kept as ConditionInput);
  const merged = mergeConditions(previous, conditions, now);
  return {
    observedGeneration: generation,
    conditions: merged,
    ...(usage ? { usage: userUsage(username, usage) } : {}),
  };
}

/**
 * Which user a status pass means, at the version the pass read: four strings the cached
 * user holds too, not its metadata object, which the pass would keep alive after the
 * user's status write has brought a new version.
 */
export type UserRef = Pick<SmtpUser['metadata'], 'namespace' | 'name' | 'uid' | 'resourceVersion'>;

export function userRef(user: SmtpUser): UserRef {
  const { namespace, name, uid, resourceVersion } = user.metadata;
  return { namespace, name, uid, resourceVersion };
}

export interface UserStatusLogger {
  warn(details: object, message: string): void;
}

export class SmtpUserStatusUpdater {
  readonly #writer: StatusWriter;
  readonly #events: EventRecorder;
  readonly #log: UserStatusLogger | undefined;
  readonly #now: () => number;
  readonly #usage: UsagePacer<{ live: WithStatus; usage: Record<string, unknown> }>;
  /** uid → what the last pass saw (version, outcome, usage report): an unchanged user is skipped at once */
  readonly #seen = new Map<string, string>();

  constructor(options: {
    client: KubeClient;
    events: EventRecorder;
    log?: UserStatusLogger;
    now?: () => number;
    /** The usage write budget (status patches a second); see usage-pacer.ts */
    usageWritesPerSecond?: number;
  }) {
    this.#writer = new StatusWriter(options.client, SMTP_USERS);
    this.#events = options.events;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#usage = new UsagePacer({
      ...(options.usageWritesPerSecond !== undefined ? { perSecond: options.usageWritesPerSecond } : {}),
      write: async (_uid, { live, usage }) => {
        await this.#writer.write(live, { usage });
      },
      ...(options.log ? { log: options.log } : {}),
    });
  }

  /** Usage-only status writes done so far, and how many wait for their turn. */
  get usageWrites(): { written: number; backlog: number } {
    return { written: this.#usage.written, backlog: this.#usage.backlog };
  }

  /**
   * Writes each user's status (several at once); throws after trying all of them if any write failed.
   * An entry names its user by the metadata the pass read; the user itself is read from
   * `lookup` (the informer cache) at its turn, so a pass of 100,000 writes does not keep each
   * user's old object beside the one the watch brings after its status write. A user gone
   * or changed since (another version) is left to the reconcile its change queued.
   */
  async update(
    entries: ReadonlyArray<{ user: UserRef; outcome: Outcome }>,
    lookup: (namespace: string, name: string) => SmtpUser | undefined,
    usage?: PolicyUsage,
  ): Promise<void> {
    const failures: unknown[] = [];
    const one = async ({ user: ref, outcome }: { user: UserRef; outcome: Outcome }) => {
      const user = lookup(ref.namespace ?? '', ref.name);
      if (!user || user.metadata.resourceVersion !== ref.resourceVersion) return;
      try {
        await this.#updateOne(user, outcome, usage);
      } catch (err: unknown) {
        failures.push(err);
        this.#log?.warn(
          { smtpUser: `${ref.namespace}/${ref.name}`, err: String(err) },
          'could not write the SmtpUser status',
        );
      }
    };
    // most of 100,000 users did not change since the last pass: they are passed over at once
    const changed = entries.filter(({ user, outcome }) => !this.#unchanged(user, outcome, usage));
    // a new policy of 100,000 users needs as many writes: a few in flight, not one at a time
    for (let i = 0; i < changed.length; i += STATUS_CONCURRENCY) {
      await Promise.all(changed.slice(i, i + STATUS_CONCURRENCY).map(one));
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} SmtpUser status writes failed`);
    }
  }

  /** What a pass saw of a user: the same again means nothing to compare or write. */
  #seenKey(user: UserRef, outcome: Outcome, usage: PolicyUsage | undefined): string {
    return `${user.resourceVersion}|${outcomeId(outcome)}|${usage ? usageVersion(usage) : ''}`;
  }

  #unchanged(user: UserRef, outcome: Outcome, usage: PolicyUsage | undefined): boolean {
    return this.#seen.get(user.uid ?? user.name) === this.#seenKey(user, outcome, usage);
  }

  async #updateOne(user: SmtpUser, outcome: Outcome, usage: PolicyUsage | undefined): Promise<void> {
    // 100,000 users a pass: comparing each status costs seconds; most did not change at all
    const seen = this.#seenKey(user.metadata, outcome, usage);
    const uid = user.metadata.uid ?? user.metadata.name;
    if (this.#seen.get(uid) === seen) return;
    await this.#compareAndWrite(user, outcome, usage);
    this.#seen.set(uid, seen);
  }

  async #compareAndWrite(user: SmtpUser, outcome: Outcome, usage: PolicyUsage | undefined): Promise<void> {
    const live = { ...user, status: user.status as Record<string, unknown> | undefined };
    const current = this.#writer.current(live) as { conditions?: LiveCondition[] } | undefined;
    const before = findCondition(current?.conditions, 'Ready');
    const abuseBefore = findCondition(current?.conditions, 'AbuseSuspected');
    const status = smtpUserStatus(
      user,
      outcome,
      current?.conditions,
      new Date(this.#now()).toISOString(),
      usage,
    );
    const { usage: usageStatus, ...rest } = status;
    if (usageStatus && statusHolds(rest, current) && !statusHolds(status, current)) {
      // only the usage changed: it waits for its turn in the write budget
      this.#usage.offer(user.metadata.uid ?? user.metadata.name, {
        live,
        usage: usageStatus as unknown as Record<string, unknown>,
      });
      return;
    }
    const wrote = await this.#writer.write(live, status as Record<string, unknown>);
    if (!wrote) return;
    const ready = findCondition(status.conditions, 'Ready');
    if (ready?.status === 'False' && (before?.status !== 'False' || before.reason !== ready.reason)) {
      await this.#events.record(user, 'Warning', ready.reason ?? 'NotReady', ready.message ?? '');
    }
    const abuse = findCondition(status.conditions, 'AbuseSuspected');
    if (abuse?.status === 'True' && (abuseBefore?.status !== 'True' || abuseBefore.reason !== abuse.reason)) {
      await this.#events.record(
        user,
        'Warning',
        abuse.reason ?? 'AbuseSuspected',
        abuse.message ?? '',
        'DetectAbuse',
      );
    }
  }

  /** A version of the user reached the cache (see StatusWriter.seen). */
  seen(uid: string, resourceVersion: string | undefined): void {
    this.#writer.seen(uid, resourceVersion);
  }

  forget(uid: string): void {
    this.#writer.forget(uid);
    this.#usage.forget(uid);
    this.#seen.delete(uid);
  }

  /** Stops the usage writes (leadership lost). */
  stop(): void {
    this.#usage.stop();
  }
}
