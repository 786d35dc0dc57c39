// The status of each SmtpUser, from what the policy's reconcile made of it: Ready True
// (Active or Suspended) or False with the reason (PolicyNotFound, SecretNotFound,
// DuplicateUsername, ReservedUsername) and a Warning Event when a user stops being ready.
// Each user is written on its own: one user's problem never holds back the others.
import type { SmtpUser } from '../api/types.ts';
import type { UserOutcome } from '../build/users.ts';
import type { KubeClient } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { SMTP_USERS } from '../kube/resources.ts';
import { findCondition, type LiveCondition, mergeConditions } from './conditions.ts';
import { StatusWriter } from './status-writer.ts';

export type Outcome = Omit<UserOutcome, 'name'>;

export function policyNotFound(policyName: string, namespace: string): Outcome {
  return {
    ok: false,
    reason: 'PolicyNotFound',
    message: `RelayPolicy ${policyName} not found in namespace ${namespace}; create it or fix spec.policyRef.name`,
  };
}

export function smtpUserStatus(
  user: SmtpUser,
  outcome: Outcome,
  previous: readonly LiveCondition[] | undefined,
  now: string,
): { observedGeneration: number; conditions: ReturnType<typeof mergeConditions> } {
  const generation = user.metadata.generation ?? 0;
  return {
    observedGeneration: generation,
    conditions: mergeConditions(
      previous,
      [
        {
          type: 'Ready',
          status: outcome.ok ? 'True' : 'False',
          reason: outcome.reason,
          message: outcome.message,
          observedGeneration: generation,
        },
      ],
      now,
    ),
  };
}

export interface UserStatusLogger {
  warn(details: object, message: string): void;
}

export class SmtpUserStatusUpdater {
  readonly #writer: StatusWriter;
  readonly #events: EventRecorder;
  readonly #log: UserStatusLogger | undefined;
  readonly #now: () => number;

  constructor(options: {
    client: KubeClient;
    events: EventRecorder;
    log?: UserStatusLogger;
    now?: () => number;
  }) {
    this.#writer = new StatusWriter(options.client, SMTP_USERS);
    this.#events = options.events;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  /** Writes each user's status; throws after trying all of them if any write failed. */
  async update(entries: ReadonlyArray<{ user: SmtpUser; outcome: Outcome }>): Promise<void> {
    const failures: unknown[] = [];
    for (const { user, outcome } of entries) {
      try {
        await this.#updateOne(user, outcome);
      } catch (err: unknown) {
        failures.push(err);
        this.#log?.warn(
          { smtpUser: `${user.metadata.namespace}/${user.metadata.name}`, err: String(err) },
          'could not write the SmtpUser status',
        );
      }
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} SmtpUser status writes failed`);
    }
  }

  async #updateOne(user: SmtpUser, outcome: Outcome): Promise<void> {
    const live = { ...user, status: user.status as Record<string, unknown> | undefined };
    const current = this.#writer.current(live) as { conditions?: LiveCondition[] } | undefined;
    const before = findCondition(current?.conditions, 'Ready');
    const status = smtpUserStatus(user, outcome, current?.conditions, new Date(this.#now()).toISOString());
    const wrote = await this.#writer.write(live, status);
    if (wrote && !outcome.ok && (before?.status !== 'False' || before.reason !== outcome.reason)) {
      await this.#events.record(user, 'Warning', outcome.reason, outcome.message);
    }
  }

  forget(uid: string): void {
    this.#writer.forget(uid);
  }
}
