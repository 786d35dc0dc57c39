// Coverage feedback from V8's own block coverage (the data behind `node --experimental-test-coverage`
// and c8), read in-process through the inspector protocol. No source instrumentation: V8
// counts every executed block of every function, and takePreciseCoverage hands the counts
// over and resets them, so each read covers exactly the work since the one before.
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  scriptId: string;
  url: string;
  functions: Array<{ ranges: Range[] }>;
}

/** The edges the fuzzer looks for: executed blocks, and roughly how often (libFuzzer's counter buckets). */
export class CoverageMap {
  readonly #session = new Session();
  readonly #include: readonly string[];
  readonly #wanted = new Map<string, number>(); // scriptId → index, or -1 when not wanted
  readonly #seen = new Set<number>();
  readonly #blocks = new Set<number>();
  /** The blocks seen in each function (keyed by script index and function start): start × 2^24 + end. */
  readonly #known = new Map<number, Set<number>>();

  /** include: substrings of the script URLs whose blocks count (the code under test). */
  constructor(include: readonly string[]) {
    this.#include = include;
    this.#session.connect();
    this.#post('Profiler.enable');
    // Must run before the code under test is loaded: block counters are compiled in.
    this.#post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  /**
   * The features of the work done since the last call: one number per (block, count bucket).
   *
   * V8 reports a function's blocks compactly: a block that ran as often as the block around
   * it is left out, and blocks that did not run are reported with count 0. So the blocks an
   * input reached are not the ranges reported with a count; they are the blocks known from
   * any report (every block shows once it is skipped) that no 0-count range of this report
   * covers, each counted as the innermost reported range around it.
   */
  take(): number[] {
    const { result } = this.#post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const features: number[] = [];
    for (const script of result) {
      const index = this.#scriptIndex(script);
      if (index < 0) continue;
      for (const fn of script.functions) {
        const head = fn.ranges[0];
        if (head === undefined || head.count === 0) continue;
        const id = index * 2 ** 24 + head.startOffset;
        let known = this.#known.get(id);
        if (known === undefined) {
          known = new Set();
          this.#known.set(id, known);
        }
        for (const range of fn.ranges) known.add(range.startOffset * 2 ** 24 + range.endOffset);
        for (const block of known) {
          const start = Math.floor(block / 2 ** 24);
          const end = block % 2 ** 24;
          let count = 0;
          let innermost = Number.POSITIVE_INFINITY;
          for (const range of fn.ranges) {
            const length = range.endOffset - range.startOffset;
            if (range.startOffset <= start && end <= range.endOffset && length < innermost) {
              innermost = length;
              count = range.count;
            }
          }
          // 2^12 scripts × 2^24 offsets × 2^4 buckets fits in a double's 53 bits
          if (count > 0) features.push((index * 2 ** 24 + start) * 16 + bucket(count));
        }
      }
    }
    return features;
  }

  /** Counts the features not seen before and remembers them; returns how many were new. */
  add(features: readonly number[]): number {
    let fresh = 0;
    for (const f of features) {
      if (!this.#seen.has(f)) {
        this.#seen.add(f);
        this.#blocks.add(Math.floor(f / 16));
        fresh++;
      }
    }
    return fresh;
  }

  /**
   * Remembers the blocks of a batch's features once its inputs were run one by one. V8
   * leaves out a block that ran as often as the block around it, so a block one input
   * reaches may show only in a batch's summed counts; it must not make every later batch
   * look new.
   */
  addBlocks(features: readonly number[]): void {
    for (const f of features) this.#blocks.add(Math.floor(f / 16));
  }

  /**
   * Whether the features reach a block never reached before, without remembering it.
   * Hit-count buckets are left out: on a batch's summed counts they would be new all the time.
   */
  hasNewBlock(features: readonly number[]): boolean {
    return features.some((f) => !this.#blocks.has(Math.floor(f / 16)));
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Distinct blocks reached (features without their count bucket). */
  get blocks(): number {
    return this.#blocks.size;
  }

  close(): void {
    this.#post('Profiler.stopPreciseCoverage');
    this.#session.disconnect();
  }

  #scriptIndex(script: ScriptCoverage): number {
    let index = this.#wanted.get(script.scriptId);
    if (index === undefined) {
      const wanted = this.#include.some((part) => script.url.includes(part));
      index = wanted ? this.#wanted.size : -1;
      this.#wanted.set(script.scriptId, index);
    }
    return index;
  }

  /** A same-thread inspector session answers synchronously. */
  #post(method: string, params?: object): unknown {
    let answer: unknown;
    let failure: Error | null = null;
    let answered = false;
    this.#session.post(method, params ?? {}, (err: Error | null, result?: unknown) => {
      answered = true;
      failure = err;
      answer = result;
    });
    if (!answered) throw new Error(`inspector did not answer ${method} synchronously`);
    if (failure !== null) throw failure;
    return answer;
  }
}

/** libFuzzer's hit-count buckets: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+. */
function bucket(count: number): number {
  if (count <= 3) return count;
  if (count < 8) return 4;
  if (count < 16) return 5;
  if (count < 32) return 6;
  if (count < 128) return 7;
  return 8;
}
