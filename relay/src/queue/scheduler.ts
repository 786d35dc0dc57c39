// Which queued message is due when. One timer is armed for the earliest due time; the clock
// and the timer are injected so tests move time explicitly. Ids are kept in a min-heap with
// lazy deletion: rescheduling or removing an id leaves a stale heap entry that is skipped.
// This is all the queue keeps of a message that is not due: its id and due time (about
// 100 bytes), so a million queued messages fit in a few hundred MiB (bench/README.md).

export interface Timer {
  cancel(): void;
}

export interface SchedulerOptions {
  /** Milliseconds since the epoch (due times are persisted as wall-clock times). */
  now: () => number;
  setTimer: (fn: () => void, ms: number) => Timer;
  /** Called with the ids that are due; they are no longer scheduled when it runs. */
  onDue: (ids: string[]) => void;
  /**
   * How many due ids may be handed out now (the rest stay scheduled, in due order, for the
   * next wake()); unlimited when absent.
   */
  room?: () => number;
}

interface Entry {
  id: string;
  dueAt: number;
  /** Insertion order: ids due at the same time fire first in, first out. */
  seq: number;
}

// setTimeout fires at once for delays above 2^31-1 ms; re-checking then is harmless
const MAX_TIMER_MS = 2 ** 31 - 1;

function before(a: Entry, b: Entry): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq);
}

export class Scheduler {
  readonly #now: () => number;
  readonly #setTimer: (fn: () => void, ms: number) => Timer;
  readonly #onDue: (ids: string[]) => void;
  readonly #room: () => number;
  /** The live entry of every scheduled id. */
  readonly #live = new Map<string, Entry>();
  #heap: Entry[] = [];
  #seq = 0;
  #timer: Timer | undefined;
  #timerAt: number | undefined;
  #stopped = false;

  constructor(options: SchedulerOptions) {
    this.#now = options.now;
    this.#setTimer = options.setTimer;
    this.#onDue = options.onDue;
    this.#room = options.room ?? (() => Number.POSITIVE_INFINITY);
  }

  /** Makes id due at dueAt, replacing any earlier schedule of it. */
  schedule(id: string, dueAt: number): void {
    const entry = { id, dueAt, seq: this.#seq++ };
    this.#live.set(id, entry);
    this.#push(entry);
    this.#compact();
    this.#arm();
  }

  remove(id: string): void {
    if (!this.#live.delete(id)) return;
    this.#compact();
    this.#arm();
  }

  has(id: string): boolean {
    return this.#live.has(id);
  }

  /** When id is due, if it is scheduled. */
  dueAt(id: string): number | undefined {
    return this.#live.get(id)?.dueAt;
  }

  /** Every scheduled id, in no particular order. */
  ids(): IterableIterator<string> {
    return this.#live.keys();
  }

  get size(): number {
    return this.#live.size;
  }

  /** When the earliest scheduled id is due. */
  nextDueAt(): number | undefined {
    return this.#peek()?.dueAt;
  }

  /** Fires every id that is due now (as many as there is room for), then re-arms the timer. */
  wake(): void {
    if (this.#stopped) return;
    const now = this.#now();
    const due: string[] = [];
    const room = this.#room();
    for (let top = this.#peek(); top && top.dueAt <= now && due.length < room; top = this.#peek()) {
      this.#pop();
      this.#live.delete(top.id);
      due.push(top.id);
    }
    try {
      if (due.length > 0) this.#onDue(due);
    } finally {
      this.#arm();
    }
  }

  /** Cancels the timer; nothing fires any more. Schedules are kept (for inspection). */
  stop(): void {
    this.#stopped = true;
    this.#cancelTimer();
  }

  #arm(): void {
    if (this.#stopped) return;
    const next = this.nextDueAt();
    // due ids waiting for room go out with the wake() the owner calls once there is room
    if (next !== undefined && next <= this.#now() && this.#room() <= 0) {
      this.#cancelTimer();
      return;
    }
    if (next === this.#timerAt) return;
    this.#cancelTimer();
    if (next === undefined) return;
    const delay = Math.min(Math.max(next - this.#now(), 0), MAX_TIMER_MS);
    this.#timerAt = next;
    this.#timer = this.#setTimer(() => {
      this.#timer = undefined;
      this.#timerAt = undefined;
      this.wake();
    }, delay);
  }

  #cancelTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#timerAt = undefined;
  }

  /** The earliest live entry, dropping stale ones from the top. */
  #peek(): Entry | undefined {
    for (let top = this.#heap[0]; top; top = this.#heap[0]) {
      if (this.#live.get(top.id) === top) return top;
      this.#pop();
    }
    return undefined;
  }

  /** Rebuilds the heap when stale entries outnumber live ones, so memory stays bounded. */
  #compact(): void {
    if (this.#heap.length <= 2 * this.#live.size + 64) return;
    this.#heap = [];
    for (const entry of this.#live.values()) this.#push(entry);
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (!before(entry, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}
