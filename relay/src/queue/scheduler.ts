// Which queued message is due when. One timer is armed for the earliest due time; the clock
// and the timer are injected so tests move time explicitly. This is all the queue keeps of
// a message that is not due, so it is kept compact: a binary min-heap whose due times and
// insertion order sit in typed arrays, the ids in one array beside them, and a map from id
// to heap position. That is one object per message (its id) for the garbage collector to
// walk (bench/README.md: with three objects per entry a million queued messages added
// 271 MiB of RSS and slowed acceptance by a fifth; this way, 234 MiB).

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

// setTimeout fires at once for delays above 2^31-1 ms; re-checking then is harmless
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Scheduler {
  readonly #now: () => number;
  readonly #setTimer: (fn: () => void, ms: number) => Timer;
  readonly #onDue: (ids: string[]) => void;
  readonly #room: () => number;
  /** Heap position of every scheduled id. */
  readonly #position = new Map<string, number>();
  #ids: string[] = [];
  #due = new Float64Array(64);
  /** Insertion order: ids due at the same time fire first in, first out. */
  #order = new Float64Array(64);
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
    const at = this.#position.get(id);
    if (at === undefined) {
      const i = this.#ids.length;
      this.#grow(i + 1);
      this.#ids.push(id);
      this.#due[i] = dueAt;
      this.#order[i] = this.#seq++;
      this.#position.set(id, i);
      this.#up(i);
    } else {
      this.#due[at] = dueAt;
      this.#order[at] = this.#seq++;
      this.#down(this.#up(at));
    }
    this.#arm();
  }

  remove(id: string): void {
    const at = this.#position.get(id);
    if (at === undefined) return;
    this.#take(at);
    this.#arm();
  }

  has(id: string): boolean {
    return this.#position.has(id);
  }

  /** When id is due, if it is scheduled. */
  dueAt(id: string): number | undefined {
    const at = this.#position.get(id);
    return at === undefined ? undefined : this.#due[at];
  }

  /** Every scheduled id, in no particular order. */
  ids(): IterableIterator<string> {
    return this.#position.keys();
  }

  get size(): number {
    return this.#ids.length;
  }

  /** When the earliest scheduled id is due. */
  nextDueAt(): number | undefined {
    return this.#ids.length === 0 ? undefined : this.#due[0];
  }

  /** Fires every id that is due now (as many as there is room for), then re-arms the timer. */
  wake(): void {
    if (this.#stopped) return;
    const now = this.#now();
    const due: string[] = [];
    const room = this.#room();
    while (this.#ids.length > 0 && this.#due[0]! <= now && due.length < room) {
      due.push(this.#ids[0]!);
      this.#take(0);
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

  #grow(size: number): void {
    if (size <= this.#due.length) return;
    const capacity = Math.max(size, this.#due.length * 2);
    const due = new Float64Array(capacity);
    due.set(this.#due);
    this.#due = due;
    const order = new Float64Array(capacity);
    order.set(this.#order);
    this.#order = order;
  }

  /** Takes the entry at heap position i out. */
  #take(i: number): void {
    const ids = this.#ids;
    const last = ids.length - 1;
    this.#position.delete(ids[i]!);
    if (i !== last) {
      this.#place(i, ids[last]!, this.#due[last]!, this.#order[last]!);
      ids.pop();
      this.#down(this.#up(i));
    } else {
      ids.pop();
    }
  }

  #before(a: number, b: number): boolean {
    const due = this.#due;
    return due[a]! < due[b]! || (due[a] === due[b] && this.#order[a]! < this.#order[b]!);
  }

  #place(i: number, id: string, dueAt: number, order: number): void {
    this.#ids[i] = id;
    this.#due[i] = dueAt;
    this.#order[i] = order;
    this.#position.set(id, i);
  }

  #swap(i: number, j: number): void {
    const id = this.#ids[i]!;
    const dueAt = this.#due[i]!;
    const order = this.#order[i]!;
    this.#place(i, this.#ids[j]!, this.#due[j]!, this.#order[j]!);
    this.#place(j, id, dueAt, order);
  }

  /** Sifts the entry at i up; returns where it ended. */
  #up(i: number): number {
    let at = i;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.#before(at, parent)) break;
      this.#swap(at, parent);
      at = parent;
    }
    return at;
  }

  #down(i: number): void {
    const size = this.#ids.length;
    let at = i;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= size) return;
      const right = left + 1;
      const child = right < size && this.#before(right, left) ? right : left;
      if (!this.#before(child, at)) return;
      this.#swap(at, child);
      at = child;
    }
  }
}
