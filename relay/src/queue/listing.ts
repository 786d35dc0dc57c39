// The queue listing: the types of its query and page, and the parts of a page that need
// no queue: matching an envelope against the filters and picking the next ids in order.
// Queue ids sort by arrival (spool/queue-id.ts), so "oldest first" and the cursor are
// both the queue id, and the age filters need no envelope.
import type { SpooledEnvelope } from '../spool/envelope.ts';

export const QUEUE_STATES = ['active', 'due', 'deferred', 'held'] as const;
/**
 * active: being attempted; due: waiting for an active slot; deferred: waiting for its next
 * attempt; held: on hold until released (never attempted).
 */
export type QueueState = (typeof QUEUE_STATES)[number];

/** What a page of the queue listing asks for; every filter is optional. */
export interface QueueQuery {
  /** Only messages whose queue id sorts after this (the cursor of the previous page). */
  after?: string;
  /** At most this many messages (default 100, at most 1,000). */
  limit?: number;
  /** Sender address (case-insensitive), or "@domain" for any sender at that domain. */
  sender?: string;
  /** A recipient domain (case-insensitive): messages with a recipient there. */
  domain?: string;
  state?: QueueState;
  /** Received at or before this time (ms since the epoch). */
  receivedBefore?: number;
  /** Received at or after this time (ms since the epoch). */
  receivedAfter?: number;
}

export interface QueuePage {
  messages: Array<SpooledEnvelope & { state: QueueState }>;
  /** Messages in the queue, held ones included. */
  total: number;
  /** The cursor for the next page, or null at the end of the queue. */
  next: string | null;
}

/** Envelopes read for one page at most: a filter that matches little returns a short page and a cursor. */
export const PAGE_READ_BUDGET = 2_000;
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1_000;

/** Arrival time from a queue id (queue-id.ts: base 36 milliseconds, then random bits), or NaN. */
export function arrivalOf(queueId: string): number {
  return Number.parseInt(queueId.slice(0, 9), 36);
}

/** Whether an envelope matches the listing's sender and recipient-domain filters (lower case). */
export function matchesEnvelope(envelope: SpooledEnvelope, sender?: string, domain?: string): boolean {
  if (sender !== undefined) {
    const from = envelope.sender.toLowerCase();
    if (sender.startsWith('@') ? !from.endsWith(sender) : from !== sender) return false;
  }
  if (domain !== undefined) {
    const suffix = `@${domain}`;
    if (!envelope.recipients.some((r) => r.address.toLowerCase().endsWith(suffix))) return false;
  }
  return true;
}

/** Orders strings by UTF-16 code units, as Array#sort does by default. */
const byCodeUnits = (a: unknown, b: unknown): number =>
  (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;

/**
 * The k smallest items offered, kept in a max-heap (a listing page out of a million ids);
 * strings unless the caller gives an order (the scheduler keeps slot numbers, ordered as
 * the ids they stand for).
 */
export class MaxHeap<T = string> {
  readonly #k: number;
  readonly #compare: (a: T, b: T) => number;
  readonly #items: T[] = [];

  constructor(k: number, compare: (a: T, b: T) => number = byCodeUnits) {
    this.#k = k;
    this.#compare = compare;
  }

  /** Whether item would be kept (cheap, so the caller can skip its own checks otherwise). */
  wants(item: T): boolean {
    return (
      this.#items.length < this.#k || (this.#items.length > 0 && this.#compare(item, this.#items[0]!) < 0)
    );
  }

  /** Keeps item; call only when wants(item) says so. */
  offer(item: T): void {
    const items = this.#items;
    const larger = (i: number, j: number) => this.#compare(items[i]!, items[j]!) > 0;
    if (items.length < this.#k) {
      items.push(item);
      for (let i = items.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!larger(i, parent)) break;
        [items[parent], items[i]] = [items[i]!, items[parent]!];
        i = parent;
      }
      return;
    }
    items[0] = item;
    for (let i = 0; ; ) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && larger(right, left) ? right : left;
      if (!larger(child, i)) break;
      [items[child], items[i]] = [items[i]!, items[child]!];
      i = child;
    }
  }

  /** What is kept, smallest first. */
  sorted(): T[] {
    return [...this.#items].sort(this.#compare);
  }
}

/** Every id's value, `width` reads at a time (in the order of ids). */
export async function readAhead<T>(
  ids: readonly string[],
  read: (id: string) => Promise<T>,
  width = 16,
): Promise<T[]> {
  const out: T[] = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < ids.length; i = next++) out[i] = await read(ids[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, ids.length) }, worker));
  return out;
}
