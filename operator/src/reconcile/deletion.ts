// Deleting a RelayPolicy deletes its StatefulSet, and with it every pod's spool. So that
// no queued mail is lost, the policy carries a finalizer: once it is deleted, the relays
// keep running and delivering while the operator asks each pod how many messages it still
// holds; the finalizer is removed when every queue is empty, or when the deadline passes
// (then an Event says how much mail was still queued). Status says which it waits for.

import type { RelayPolicy } from '../api/types.ts';
import { ADMIN_PORT, names } from '../build/names.ts';

export const QUEUED_MAIL_FINALIZER = 'sluice.dev/queued-mail';

/** How long a deleted policy waits for its queues by default. */
export const DEFAULT_DELETION_DRAIN_MS = 15 * 60_000;

export interface QueueTarget {
  /** One relay pod's admin API, e.g. http://mail-relay-0.mail-relay-headless.prod.svc:9587 */
  url: string;
  token: string;
}

/** How many messages a relay pod holds (its admin API's GET /queue). */
export interface QueueSource {
  count(target: QueueTarget): Promise<number>;
}

export class RelayAdminQueueSource implements QueueSource {
  readonly #timeoutMs: number;
  constructor(options: { timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }
  async count(target: QueueTarget): Promise<number> {
    const response = await fetch(`${target.url}/queue`, {
      headers: { authorization: `Bearer ${target.token}` },
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (!response.ok) throw new Error(`GET ${target.url}/queue answered ${response.status}`);
    const body = (await response.json()) as { total?: unknown };
    if (typeof body.total !== 'number') throw new Error(`GET ${target.url}/queue: no total`);
    return body.total;
  }
}

/** Each relay pod's admin URL, through the headless Service. */
export function podQueueTargets(policy: RelayPolicy, pods: number, token: string): QueueTarget[] {
  const n = names(policy);
  const ns = policy.metadata.namespace ?? '';
  return Array.from({ length: pods }, (_, i) => ({
    url: `http://${n.statefulSet}-${i}.${n.headlessService}.${ns}.svc:${ADMIN_PORT}`,
    token,
  }));
}

export type DrainVerdict =
  | { done: true; drained: boolean; reason: string; message: string }
  | { done: false; reason: string; message: string };

/** Whether a deleted policy may go, from each pod's count (undefined: could not ask). */
export function drainVerdict(
  counts: ReadonlyArray<number | undefined>,
  now: number,
  deadline: number,
): DrainVerdict {
  const queued = counts.reduce<number>((sum, c) => sum + (c ?? 0), 0);
  const unknown = counts.filter((c) => c === undefined).length;
  const until = new Date(deadline).toISOString();
  if (queued === 0 && unknown === 0) {
    return {
      done: true,
      drained: true,
      reason: 'QueuesDrained',
      message: `Every relay queue is empty (${counts.length} pods); the policy and its objects are deleted`,
    };
  }
  const what = `${queued} message${queued === 1 ? '' : 's'} queued${unknown ? `, ${unknown} of ${counts.length} pods not answering` : ''}`;
  if (now >= deadline) {
    return {
      done: true,
      drained: false,
      reason: 'QueueDeadlinePassed',
      message: `Deleted at the deadline (${until}) with ${what}: that mail is lost`,
    };
  }
  return {
    done: false,
    reason: 'WaitingForQueues',
    message: `Being deleted: ${what}; the relays keep delivering until the queues are empty or ${until}`,
  };
}
