// Which queued message is due when. One timer is armed for the earliest due time; the clock
// and the timer are injected so tests move time explicitly. This is all the queue keeps of
// a message that is not due, so it is kept out of the garbage-collected heap: a queue id
// (9 base-36 characters of arrival time, then 10 hex digits of randomness) is held as two
// numbers, and each entry is a slot in typed arrays (id, due time, insertion order, heap
// position), found through an open-addressing table of slot numbers. About 50 bytes a
// message and no object for the garbage collector to walk (bench/README.md: a Map of id
// strings beside a heap added ~240 MiB of RSS at 1,000,000 queued; this way ~116 MiB).
// An id of another form (a file named by hand, a test's) is kept as a string beside them.

import { MaxHeap } from './listing.ts';

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
// a queue id (spool/queue-id.ts): 9 base-36 digits, then 10 hex digits, upper case
const TIME_DIGITS = 9;
const ID_LENGTH = 19;
const DIGITS = Buffer.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'latin1');

/** The two numbers of the last id encode() took (no tuple allocated per lookup). */
let keyHigh = 0;
let keyLow = 0;

/** The value of an upper-case digit below radix, or -1. */
function digit(code: number, radix: number): number {
  const value = code >= 48 && code <= 57 ? code - 48 : code >= 65 && code <= 90 ? code - 55 : radix;
  return value < radix ? value : -1;
}

/** Whether id has the queue id's form; if so its numbers are in keyHigh and keyLow. */
function encode(id: string): boolean {
  if (id.length !== ID_LENGTH) return false;
  let high = 0;
  for (let i = 0; i < TIME_DIGITS; i++) {
    const d = digit(id.charCodeAt(i), 36);
    if (d < 0) return false;
    high = high * 36 + d;
  }
  let low = 0;
  for (let i = TIME_DIGITS; i < ID_LENGTH; i++) {
    const d = digit(id.charCodeAt(i), 16);
    if (d < 0) return false;
    low = low * 16 + d;
  }
  keyHigh = high;
  keyLow = low;
  return true;
}

// Number#toString(36) of a double is ten times slower: ids are written into a scratch buffer
const scratch = Buffer.alloc(ID_LENGTH);

function decode(high: number, low: number): string {
  let rest = high;
  for (let i = TIME_DIGITS - 1; i >= 0; i--) {
    const next = Math.floor(rest / 36);
    scratch[i] = DIGITS[rest - next * 36]!;
    rest = next;
  }
  rest = low;
  for (let i = ID_LENGTH - 1; i >= TIME_DIGITS; i--) {
    const next = Math.floor(rest / 16);
    scratch[i] = DIGITS[rest - next * 16]!;
    rest = next;
  }
  return scratch.toString('latin1', 0, ID_LENGTH);
}

/** Slots below this and arrival times less than SPAN_LIMIT ms apart pack into one exact double. */
const SLOT_LIMIT = 2 ** 24;
const SPAN_LIMIT = 2 ** 29;

/** Two sorted lists of distinct ids as one sorted list. */
export function mergeSorted(a: string[], b: string[]): string[] {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! < b[j]!)) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  return out;
}

/** A table index for an id's numbers (the low part is random; the mix spreads the rest). */
function hashOf(high: number, low: number, mask: number): number {
  let h = Math.imul((low | 0) ^ Math.imul(high | 0, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h ^ ((low / 0x1_0000_0000) | 0), 0xc2b2ae35);
  h ^= h >>> 13;
  return h & mask;
}

export class Scheduler {
  readonly #now: () => number;
  readonly #setTimer: (fn: () => void, ms: number) => Timer;
  readonly #onDue: (ids: string[]) => void;
  readonly #room: () => number;
  // one slot per scheduled id, slots 0..size-1 in use (a removed slot takes the last one's entry)
  #high = new Float64Array(64); // NaN: the id is in #odd
  #low = new Float64Array(64);
  #due = new Float64Array(64);
  /** Insertion order: ids due at the same time fire first in, first out. */
  #order = new Float64Array(64);
  /** Heap position of each slot, and the slot at each heap position. */
  #where = new Int32Array(64);
  #heap = new Int32Array(64);
  #size = 0;
  /** Slot + 1 of each id of the queue's form, by hashOf (0: empty); linear probing. */
  #table = new Int32Array(128);
  /** Ids of another form: slot by id, and id by slot. */
  readonly #oddSlot = new Map<string, number>();
  readonly #oddId = new Map<number, string>();
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
    const found = this.#slotOf(id);
    if (found < 0) {
      const slot = this.#size++;
      this.#grow(this.#size);
      if (encode(id)) {
        this.#high[slot] = keyHigh;
        this.#low[slot] = keyLow;
        this.#insert(slot);
      } else {
        this.#high[slot] = Number.NaN;
        this.#oddSlot.set(id, slot);
        this.#oddId.set(slot, id);
      }
      this.#due[slot] = dueAt;
      this.#order[slot] = this.#seq++;
      this.#where[slot] = slot;
      this.#heap[slot] = slot;
      this.#up(slot);
    } else {
      this.#due[found] = dueAt;
      this.#order[found] = this.#seq++;
      this.#down(this.#up(this.#where[found]!));
    }
    this.#arm();
  }

  remove(id: string): void {
    const slot = this.#slotOf(id);
    if (slot < 0) return;
    this.#take(this.#where[slot]!);
    this.#arm();
  }

  has(id: string): boolean {
    return this.#slotOf(id) >= 0;
  }

  /** When id is due, if it is scheduled. */
  dueAt(id: string): number | undefined {
    const slot = this.#slotOf(id);
    return slot < 0 ? undefined : this.#due[slot];
  }

  /** Every scheduled id, in no particular order (each made as a string when reached). */
  *ids(): IterableIterator<string> {
    for (let slot = 0; slot < this.#size; slot++) yield this.#idOf(slot);
  }

  /**
   * Every scheduled id, smallest first. Queue ids are sorted as numbers: arrival time and
   * slot packed into one double when the queue spans less than six days (a native sort,
   * ties on arrival then put in order of their random part), else with a comparator.
   */
  sortedIds(): string[] {
    const high = this.#high;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    let count = 0;
    for (let slot = 0; slot < this.#size; slot++) {
      const h = high[slot]!;
      if (Number.isNaN(h)) continue;
      count++;
      if (h < min) min = h;
      if (h > max) max = h;
    }
    const order = new Int32Array(count);
    if (count > 0 && max - min < SPAN_LIMIT && this.#size <= SLOT_LIMIT) {
      const keys = new Float64Array(count);
      let k = 0;
      for (let slot = 0; slot < this.#size; slot++) {
        if (!Number.isNaN(high[slot]!)) keys[k++] = (high[slot]! - min) * SLOT_LIMIT + slot;
      }
      keys.sort();
      for (let i = 0; i < count; i++) order[i] = keys[i]! % SLOT_LIMIT;
      const low = this.#low;
      for (let i = 0; i < count; ) {
        let j = i + 1;
        while (j < count && high[order[j]!] === high[order[i]!]) j++;
        if (j - i > 1) order.subarray(i, j).sort((a, b) => low[a]! - low[b]!);
        i = j;
      }
    } else {
      let k = 0;
      for (let slot = 0; slot < this.#size; slot++) if (!Number.isNaN(high[slot]!)) order[k++] = slot;
      order.sort((a, b) => this.#compare(a, b));
    }
    return mergeSorted(
      Array.from(order, (slot) => decode(high[slot]!, this.#low[slot]!)),
      [...this.#oddSlot.keys()].sort(),
    );
  }

  /** The smallest scheduled id (the oldest, for queue ids), without making the others. */
  smallestId(): string | undefined {
    let best = -1;
    for (let slot = 0; slot < this.#size; slot++) {
      if (best < 0 || this.#compare(slot, best) < 0) best = slot;
    }
    return best < 0 ? undefined : this.#idOf(best);
  }

  /**
   * Up to k scheduled ids greater than `after`, smallest first, among those `keep` keeps:
   * one pass over the numbers; only an id that would enter the k is made and shown to keep.
   */
  smallestAfter(after: string, k: number, keep: (id: string) => boolean): string[] {
    // the k smallest slots so far, ordered as their ids
    const chosen = new MaxHeap<number>(k, (a, b) => this.#compare(a, b));
    const afterCompact = encode(after);
    const afterHigh = keyHigh;
    const afterLow = keyLow;
    const greaterThanAfter = (slot: number): boolean => {
      if (after === '') return true;
      const high = this.#high[slot]!;
      if (afterCompact && !Number.isNaN(high)) {
        return high > afterHigh || (high === afterHigh && this.#low[slot]! > afterLow);
      }
      return this.#idOf(slot) > after;
    };
    for (let slot = 0; slot < this.#size; slot++) {
      if (greaterThanAfter(slot) && chosen.wants(slot) && keep(this.#idOf(slot))) chosen.offer(slot);
    }
    return chosen.sorted().map((slot) => this.#idOf(slot));
  }

  /**
   * Makes every scheduled id due at dueAt at once (a flush), keeping their order among
   * themselves; returns how many. One pass and one rebuild of the heap, not a sift per id.
   */
  rescheduleAll(dueAt: number): number {
    const size = this.#size;
    this.#due.fill(dueAt, 0, size);
    // equal due times leave the insertion order to decide: a heap rebuilt bottom-up
    for (let i = (size >> 1) - 1; i >= 0; i--) this.#down(i);
    this.#arm();
    return size;
  }

  get size(): number {
    return this.#size;
  }

  /** When the earliest scheduled id is due. */
  nextDueAt(): number | undefined {
    return this.#size === 0 ? undefined : this.#due[this.#heap[0]!];
  }

  /** Fires every id that is due now (as many as there is room for), then re-arms the timer. */
  wake(): void {
    if (this.#stopped) return;
    const now = this.#now();
    const due: string[] = [];
    const room = this.#room();
    while (this.#size > 0 && this.#due[this.#heap[0]!]! <= now && due.length < room) {
      due.push(this.#idOf(this.#heap[0]!));
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

  #idOf(slot: number): string {
    const high = this.#high[slot]!;
    return Number.isNaN(high) ? this.#oddId.get(slot)! : decode(high, this.#low[slot]!);
  }

  /** Orders two slots as their ids order as strings. */
  #compare(a: number, b: number): number {
    const highA = this.#high[a]!;
    const highB = this.#high[b]!;
    if (Number.isNaN(highA) || Number.isNaN(highB)) {
      const idA = this.#idOf(a);
      const idB = this.#idOf(b);
      return idA < idB ? -1 : idA > idB ? 1 : 0;
    }
    if (highA !== highB) return highA < highB ? -1 : 1;
    const lowA = this.#low[a]!;
    const lowB = this.#low[b]!;
    return lowA < lowB ? -1 : lowA > lowB ? 1 : 0;
  }

  /** The slot of id, or -1. */
  #slotOf(id: string): number {
    if (!encode(id)) return this.#oddSlot.get(id) ?? -1;
    const table = this.#table;
    const mask = table.length - 1;
    for (let i = hashOf(keyHigh, keyLow, mask); ; i = (i + 1) & mask) {
      const entry = table[i]!;
      if (entry === 0) return -1;
      const slot = entry - 1;
      if (this.#high[slot] === keyHigh && this.#low[slot] === keyLow) return slot;
    }
  }

  /** Puts a slot of the queue's id form into the table (it is not there yet). */
  #insert(slot: number): void {
    const table = this.#table;
    const mask = table.length - 1;
    let i = hashOf(this.#high[slot]!, this.#low[slot]!, mask);
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = slot + 1;
  }

  /** Where a slot of the queue's id form sits in the table. */
  #tableIndex(slot: number): number {
    const table = this.#table;
    const mask = table.length - 1;
    for (let i = hashOf(this.#high[slot]!, this.#low[slot]!, mask); ; i = (i + 1) & mask) {
      if (table[i] === slot + 1) return i;
    }
  }

  /** Takes a slot out of the table, shifting back the entries its place would cut off. */
  #unlink(slot: number): void {
    const table = this.#table;
    const mask = table.length - 1;
    let hole = this.#tableIndex(slot);
    table[hole] = 0;
    for (let i = (hole + 1) & mask; table[i] !== 0; i = (i + 1) & mask) {
      const other = table[i]! - 1;
      const home = hashOf(this.#high[other]!, this.#low[other]!, mask);
      // it may fill the hole if its home is not in the cyclic range (hole, i]
      if (((i - home) & mask) >= ((i - hole) & mask)) {
        table[hole] = table[i]!;
        table[i] = 0;
        hole = i;
      }
    }
  }

  #grow(size: number): void {
    if (size > this.#due.length) {
      const capacity = Math.max(size, this.#due.length * 2);
      const bigger = <T extends Float64Array | Int32Array>(from: T, make: (n: number) => T): T => {
        const to = make(capacity);
        to.set(from);
        return to;
      };
      const float = (n: number) => new Float64Array(n);
      const int = (n: number) => new Int32Array(n);
      this.#high = bigger(this.#high, float);
      this.#low = bigger(this.#low, float);
      this.#due = bigger(this.#due, float);
      this.#order = bigger(this.#order, float);
      this.#where = bigger(this.#where, int);
      this.#heap = bigger(this.#heap, int);
    }
    // at most half full, so probes stay short
    if (size * 2 > this.#table.length) {
      this.#table = new Int32Array(this.#table.length * 2);
      for (let slot = 0; slot < size - 1; slot++) if (!Number.isNaN(this.#high[slot]!)) this.#insert(slot);
    }
  }

  /** Takes the entry at heap position i out; the last slot moves into the freed one. */
  #take(i: number): void {
    const slot = this.#heap[i]!;
    const lastAt = this.#size - 1;
    // out of the heap: the last heap entry fills position i
    if (i !== lastAt) {
      this.#setHeap(i, this.#heap[lastAt]!);
    }
    // out of the id lookups
    if (Number.isNaN(this.#high[slot]!)) {
      this.#oddSlot.delete(this.#oddId.get(slot)!);
      this.#oddId.delete(slot);
    } else {
      this.#unlink(slot);
    }
    // the last slot moves into the freed one, so slots stay 0..size-1
    const lastSlot = this.#size - 1;
    if (slot !== lastSlot) this.#move(lastSlot, slot);
    this.#size--;
    if (i !== lastAt) this.#down(this.#up(i));
  }

  /** Moves the entry of slot `from` into the free slot `to`. */
  #move(from: number, to: number): void {
    const high = this.#high[from]!;
    this.#high[to] = high;
    this.#low[to] = this.#low[from]!;
    this.#due[to] = this.#due[from]!;
    this.#order[to] = this.#order[from]!;
    this.#setHeap(this.#where[from]!, to);
    if (Number.isNaN(high)) {
      const id = this.#oddId.get(from)!;
      this.#oddId.delete(from);
      this.#oddId.set(to, id);
      this.#oddSlot.set(id, to);
    } else {
      this.#table[this.#tableIndex(from)] = to + 1;
    }
  }

  #setHeap(i: number, slot: number): void {
    this.#heap[i] = slot;
    this.#where[slot] = i;
  }

  #before(i: number, j: number): boolean {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    const due = this.#due;
    return due[a]! < due[b]! || (due[a] === due[b] && this.#order[a]! < this.#order[b]!);
  }

  #swap(i: number, j: number): void {
    const slot = this.#heap[i]!;
    this.#setHeap(i, this.#heap[j]!);
    this.#setHeap(j, slot);
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
    const size = this.#size;
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
