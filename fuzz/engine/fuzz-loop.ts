// The coverage-guided loop, libFuzzer's in outline: replay the seed corpus and the
// regression inputs, then mutate corpus entries and keep each mutant that reaches a block
// (or a block's hit-count bucket) no input reached before. A finding (an exception, an
// unhandled rejection, a failed check, a slice over the bound) stops the run; its input is
// written to the artifact directory.
//
// Reading V8's coverage costs a few milliseconds, more than most inputs, so mutants run in
// batches with one read per batch; only a batch that reached a new block is run again, in
// halves down to single inputs, to find which inputs to keep. So a new hit-count bucket
// counts only for the inputs of such a batch: on a batch's summed counts it would say
// nothing about any one input. After the first minutes few batches reach a new block,
// and the read is paid once per batch.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { CoverageMap } from './coverage.ts';
import { Mutator, Random } from './mutate.ts';
import { SliceProbe } from './slice-probe.ts';

export interface FuzzTarget {
  name: string;
  /** The seed corpus folder's name, when the target shares another's (default: name). */
  corpus?: string;
  /** Longest input the mutator makes, in bytes. */
  maxLength: number;
  /** Tokens the mutator inserts (command verbs, header names, magic numbers). */
  dictionary?: readonly (string | Buffer)[];
  setup?(): Promise<void>;
  /** Processes one input; throws on a finding. Times its synchronous work with the probe. */
  run(input: Buffer, probe: SliceProbe): Promise<void>;
  teardown?(): Promise<void>;
}

export interface FuzzOptions {
  /** Stop after this many generated inputs (seeds and regressions not counted). */
  runs: number;
  /** Stop after this many seconds. */
  maxSeconds: number;
  seed: number;
  /** Directories of inputs to start from: the seed corpus, regressions, a saved corpus. */
  inputDirs: readonly string[];
  /** Where inputs that reached new coverage are saved (the long run's growing corpus), if anywhere. */
  saveCorpusDir?: string;
  /** Where the input of a finding is written. */
  artifactDir: string;
  /** An input whose longest synchronous slice is over this many ms is a finding. */
  boundMs: number;
  /** An input not done after this many ms is a finding (a hang: a stream that never drains, a reply that never comes). */
  hangMs: number;
  /** Most inputs run between two reads of coverage. */
  batch: number;
  log: (line: string) => void;
}

export interface FuzzReport {
  inputs: number;
  seconds: number;
  corpus: number;
  blocks: number;
  features: number;
  longest: { wallMs: number; cpuMs: number };
  finding: { message: string; artifact: string } | null;
}

export async function fuzz(
  target: FuzzTarget,
  coverage: CoverageMap,
  options: FuzzOptions,
): Promise<FuzzReport> {
  const started = performance.now();
  const random = new Random(options.seed);
  const dictionary = (target.dictionary ?? []).map((w) => (typeof w === 'string' ? Buffer.from(w) : w));
  const mutator = new Mutator(random, dictionary, target.maxLength);
  const probe = new SliceProbe();
  const corpus: Buffer[] = [];
  let escaped: unknown = null;
  const onEscape = (err: unknown): void => {
    escaped ??= err;
  };
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
  let inputs = 0;
  let longest = { wallMs: 0, cpuMs: 0 };
  const report = (finding: FuzzReport['finding']): FuzzReport => ({
    inputs,
    seconds: (performance.now() - started) / 1000,
    corpus: corpus.length,
    blocks: coverage.blocks,
    features: coverage.size,
    longest,
    finding,
  });

  /** Runs one input with the checks of the target and the loop; returns a finding's message, or null. */
  const runOnce = async (input: Buffer): Promise<string | null> => {
    probe.reset();
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((resolve) => {
      timer = setTimeout(() => resolve('hang'), options.hangMs);
    });
    try {
      if ((await Promise.race([target.run(input, probe), hang])) === 'hang') {
        return `hang: the input was not done after ${options.hangMs} ms`;
      }
    } catch (err: unknown) {
      return `target failed: ${describe(err)}`;
    } finally {
      clearTimeout(timer);
    }
    // whatever the input left behind (a rejected promise nobody awaited) surfaces by the next turn
    await nextTurn();
    if (escaped !== null) {
      const err = escaped;
      escaped = null;
      return `escaped the target (uncaught exception or unhandled rejection): ${describe(err)}`;
    }
    return null;
  };

  /**
   * A stall must happen again when the input is run again: a one-off (code compiled or a
   * module loaded on first use, a garbage collection) is no property of the input.
   */
  const runOne = async (input: Buffer): Promise<string | null> => {
    const message = await runOnce(input);
    if (message !== null) return message;
    if (probe.longest.cpuMs > longest.cpuMs) longest = probe.longest;
    if (!probe.stalled(options.boundMs)) return null;
    const slices = [probe.longest];
    for (let again = 0; again < 2; again++) {
      const repeat = await runOnce(input);
      if (repeat !== null) return repeat;
      if (!probe.stalled(options.boundMs)) return null;
      slices.push(probe.longest);
    }
    const shown = slices.map((s) => `${s.wallMs.toFixed(1)} ms (${s.cpuMs.toFixed(1)} ms CPU)`).join(', ');
    return `event loop stalled: the longest slice took ${shown} in three runs, bound ${options.boundMs} ms`;
  };

  const found = async (input: Buffer, message: string): Promise<FuzzReport> => {
    await mkdir(options.artifactDir, { recursive: true });
    const artifact = join(options.artifactDir, `${target.name}-${sha1(input)}`);
    await writeFile(artifact, input);
    options.log(`FINDING in ${target.name}: ${message}`);
    options.log(`input (${input.length} bytes) written to ${artifact}`);
    return report({ message, artifact });
  };

  const keep = async (input: Buffer): Promise<void> => {
    corpus.push(input);
    if (options.saveCorpusDir !== undefined) {
      await writeFile(join(options.saveCorpusDir, sha1(input)), input);
    }
  };

  try {
    await target.setup?.();
    if (options.saveCorpusDir !== undefined) await mkdir(options.saveCorpusDir, { recursive: true });
    coverage.take(); // drop what setup ran

    // Seeds and regressions, one at a time: each must pass, and each that adds coverage is kept.
    const starts = await readInputs(options.inputDirs);
    for (const { path, input } of starts) {
      const message = await runOne(input);
      if (message !== null) return await found(input, `${message} (replaying ${path})`);
      if (coverage.add(coverage.take()) > 0 || corpus.length === 0) corpus.push(input);
    }
    if (corpus.length === 0) corpus.push(Buffer.alloc(0));
    options.log(
      `${target.name}: replayed ${starts.length} inputs, ${coverage.blocks} blocks, corpus ${corpus.length}, seed ${options.seed}`,
    );

    // The batch grows until reading coverage costs about a fifth of running the inputs.
    let batchSize = 8;
    let runMs = 1;
    let takeMs = 5;
    const take = (): number[] => {
      const t = performance.now();
      const features = coverage.take();
      takeMs = 0.9 * takeMs + 0.1 * (performance.now() - t);
      return features;
    };
    /** Finds the inputs of a batch that reached new coverage, halving it while it is large. */
    const attribute = async (group: readonly Buffer[]): Promise<FuzzReport | null> => {
      if (group.length <= 4) {
        for (const input of group) {
          const message = await runOne(input);
          if (message !== null) return await found(input, message);
          if (coverage.add(take()) > 0) await keep(input);
        }
        return null;
      }
      const half = Math.ceil(group.length / 2);
      for (const part of [group.slice(0, half), group.slice(half)]) {
        for (const input of part) {
          const message = await runOne(input);
          if (message !== null) return await found(input, message);
        }
        if (coverage.hasNewBlock(take())) {
          const finding = await attribute(part);
          if (finding !== null) return finding;
        }
      }
      return null;
    };

    const deadline = started + options.maxSeconds * 1000;
    let nextStatus = performance.now() + 10_000;
    while (inputs < options.runs && performance.now() < deadline) {
      const batch: Buffer[] = [];
      const size = Math.min(batchSize, options.runs - inputs);
      const t = performance.now();
      for (let i = 0; i < size; i++) {
        const input = mutator.mutate(random.pick(corpus), random.pick(corpus));
        batch.push(input);
        inputs++;
        const message = await runOne(input);
        if (message !== null) return await found(input, message);
      }
      runMs = 0.9 * runMs + 0.1 * ((performance.now() - t) / size);
      batchSize = Math.min(options.batch, Math.max(8, Math.ceil((5 * takeMs) / runMs)));
      const features = take();
      if (coverage.hasNewBlock(features)) {
        const finding = await attribute(batch);
        if (finding !== null) return finding;
        coverage.addBlocks(features);
      }
      if (performance.now() > nextStatus) {
        nextStatus += 10_000;
        const r = report(null);
        options.log(
          `${target.name}: #${inputs} ${Math.round(inputs / r.seconds)}/s blocks ${r.blocks} features ${r.features} corpus ${r.corpus} longest slice ${longest.cpuMs.toFixed(1)} ms`,
        );
      }
    }
    return report(null);
  } finally {
    process.off('unhandledRejection', onEscape);
    process.off('uncaughtException', onEscape);
    await target.teardown?.();
  }
}

/** Every file in the directories (missing directories are empty; a file stands for itself), in name order. */
export async function readInputs(dirs: readonly string[]): Promise<Array<{ path: string; input: Buffer }>> {
  const out: Array<{ path: string; input: Buffer }> = [];
  for (const dir of dirs) {
    const info = await stat(dir).catch(() => null);
    if (info?.isFile()) {
      out.push({ path: dir, input: await readFile(dir) });
      continue;
    }
    const names = await readdir(dir).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    });
    for (const name of names.sort()) {
      if (name.startsWith('.') || name.endsWith('.md')) continue;
      const path = join(dir, name);
      out.push({ path, input: await readFile(path) });
    }
  }
  return out;
}

function sha1(input: Buffer): string {
  return createHash('sha1').update(input).digest('hex');
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}
