// The mutations libFuzzer applies (MutationDispatcher.cpp), stacked one to five deep:
// erase, insert, duplicate and copy byte runs, flip bits, change bytes, ASCII numbers and
// binary integers to the interesting values, insert dictionary words, and cross an input
// over with another from the corpus. A seeded generator makes a run reproducible.

/** mulberry32: fast, seedable, good enough for choosing mutations. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  #next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.#next() % n;
  }
  chance(p: number): boolean {
    return this.#next() / 0x100000000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)] as T;
  }
}

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x20, 0x2e, 0x3d];
const INTERESTING_16 = [0, 1, 0x7fff, 0x8000, 0xffff, 0x00ff, 0x0100, 0x0d0a];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x0000ffff, 0x00010000];

export class Mutator {
  readonly #random: Random;
  readonly #dictionary: readonly Buffer[];
  readonly #maxLength: number;

  constructor(random: Random, dictionary: readonly Buffer[], maxLength: number) {
    this.#random = random;
    this.#dictionary = dictionary;
    this.#maxLength = maxLength;
  }

  /** A mutant of input; other supplies material for crossover. */
  mutate(input: Buffer, other: Buffer): Buffer {
    let data = input;
    const depth = 1 + this.#random.below(5);
    for (let i = 0; i < depth; i++) data = this.#once(data, other);
    return data.length > this.#maxLength ? data.subarray(0, this.#maxLength) : data;
  }

  #once(data: Buffer, other: Buffer): Buffer {
    const r = this.#random;
    switch (r.below(12)) {
      case 0:
        return this.#erase(data);
      case 1:
        return this.#insert(data, this.#randomBytes(1 + r.below(r.chance(0.5) ? 4 : 64)));
      case 2:
        return this.#insert(data, Buffer.alloc(1 + r.below(16), r.pick(INTERESTING_8)));
      case 3:
        return this.#duplicate(data);
      case 4:
        return this.#flipBit(data);
      case 5:
        return this.#setByte(data);
      case 6:
        return this.#asciiNumber(data);
      case 7:
        return this.#binaryInteger(data);
      case 8:
      case 9:
        return this.#dictionary.length > 0 ? this.#dictionaryWord(data) : this.#flipBit(data);
      case 10:
        return this.#crossOver(data, other);
      default:
        return this.#insert(data, this.#slice(other));
    }
  }

  #randomBytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.#random.below(256);
    return out;
  }

  #slice(buf: Buffer): Buffer {
    if (buf.length === 0) return buf;
    const from = this.#random.below(buf.length);
    return buf.subarray(from, from + 1 + this.#random.below(Math.min(buf.length - from, 256)));
  }

  #erase(data: Buffer): Buffer {
    if (data.length <= 1) return data;
    const from = this.#random.below(data.length);
    const n = 1 + this.#random.below(Math.min(data.length - from, this.#random.chance(0.8) ? 8 : 512));
    return Buffer.concat([data.subarray(0, from), data.subarray(from + n)]);
  }

  #insert(data: Buffer, piece: Buffer): Buffer {
    const at = this.#random.below(data.length + 1);
    return Buffer.concat([data.subarray(0, at), piece, data.subarray(at)]);
  }

  /** Overwrites at a random place rather than inserting, half the time. */
  #put(data: Buffer, piece: Buffer): Buffer {
    if (this.#random.chance(0.5) || piece.length > data.length) return this.#insert(data, piece);
    const out = Buffer.from(data);
    piece.copy(out, this.#random.below(data.length - piece.length + 1));
    return out;
  }

  #duplicate(data: Buffer): Buffer {
    return this.#insert(data, Buffer.from(this.#slice(data)));
  }

  #flipBit(data: Buffer): Buffer {
    if (data.length === 0) return this.#randomBytes(1);
    const out = Buffer.from(data);
    const at = this.#random.below(out.length);
    out[at] = (out[at] as number) ^ (1 << this.#random.below(8));
    return out;
  }

  #setByte(data: Buffer): Buffer {
    if (data.length === 0) return this.#randomBytes(1);
    const out = Buffer.from(data);
    out[this.#random.below(out.length)] = this.#random.chance(0.5)
      ? this.#random.pick(INTERESTING_8)
      : this.#random.below(256);
    return out;
  }

  /** Finds a run of ASCII digits and replaces it with a nearby or extreme number. */
  #asciiNumber(data: Buffer): Buffer {
    const start = this.#random.below(data.length);
    let from = -1;
    for (let i = start; i < data.length; i++) {
      const b = data[i] as number;
      if (b >= 0x30 && b <= 0x39) {
        from = i;
        break;
      }
    }
    if (from < 0) return this.#insert(data, Buffer.from(String(this.#number())));
    let to = from;
    while (to < data.length && (data[to] as number) >= 0x30 && (data[to] as number) <= 0x39) to++;
    const value = Number(data.toString('latin1', from, to));
    const choices = [value + 1, value - 1, value * 2, Math.floor(value / 2), this.#number()];
    const text = Buffer.from(String(this.#random.pick(choices)));
    return Buffer.concat([data.subarray(0, from), text, data.subarray(to)]);
  }

  #number(): number {
    return this.#random.pick([0, 1, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 32, 2 ** 53, 1e21, -1]);
  }

  /** Writes an interesting 8/16/32-bit value, in either byte order, over the data. */
  #binaryInteger(data: Buffer): Buffer {
    const width = this.#random.pick([1, 2, 4]);
    const piece = Buffer.alloc(width);
    const littleEndian = this.#random.chance(0.5);
    if (width === 1) piece[0] = this.#random.pick(INTERESTING_8);
    else if (width === 2) {
      const v = this.#random.pick(INTERESTING_16);
      littleEndian ? piece.writeUInt16LE(v) : piece.writeUInt16BE(v);
    } else {
      const v = this.#random.pick(INTERESTING_32);
      littleEndian ? piece.writeUInt32LE(v) : piece.writeUInt32BE(v);
    }
    return this.#put(data, piece);
  }

  #dictionaryWord(data: Buffer): Buffer {
    return this.#put(data, this.#random.pick(this.#dictionary));
  }

  /** Splices a prefix of one input onto a suffix of the other. */
  #crossOver(data: Buffer, other: Buffer): Buffer {
    const a = this.#random.below(data.length + 1);
    const b = this.#random.below(other.length + 1);
    return Buffer.concat([data.subarray(0, a), other.subarray(b)]);
  }
}
