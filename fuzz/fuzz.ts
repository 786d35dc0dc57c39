// Runs one fuzz target: node fuzz/fuzz.ts <target> [--runs N] [--seconds S] [--seed N]
//   [--bound-ms N] [--hang-ms N] [--batch N] [--save-corpus] [--replay FILE_OR_DIR ...] [--trace]
// Exits 1 on a finding (its input is written to var/fuzz/findings/), 0 otherwise.
// See fuzz/README.md.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoverageMap } from './engine/coverage.ts';
import { type FuzzTarget, fuzz } from './engine/fuzz-loop.ts';
import { TARGETS } from './targets/index.ts';

const root = join(import.meta.dirname, '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: String(Number.MAX_SAFE_INTEGER) },
    seconds: { type: 'string', default: String(Number.MAX_SAFE_INTEGER) },
    seed: { type: 'string' },
    'bound-ms': { type: 'string', default: '50' },
    'hang-ms': { type: 'string', default: '10000' },
    batch: { type: 'string', default: '256' },
    'save-corpus': { type: 'boolean', default: false },
    replay: { type: 'string', multiple: true },
    trace: { type: 'boolean', default: false },
  },
});
const name = positionals[0];
const replay = values.replay ?? [];
const entry = name === undefined ? undefined : TARGETS[name];
if (name === undefined || entry === undefined || positionals.length > 1) {
  console.error(`usage: node fuzz/fuzz.ts <${Object.keys(TARGETS).join('|')}> [options]`);
  process.exit(2);
}
const number = (key: keyof typeof values): number => {
  const n = Number(values[key]);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${key}: expected a number, got ${JSON.stringify(values[key])}`);
    process.exit(2);
  }
  return n;
};
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : number('seed');

// Coverage first: block counters are compiled into functions loaded after this.
const coverage = new CoverageMap(entry.coverage);
const target: FuzzTarget = await entry.load({ trace: values.trace });
const report = await fuzz(target, coverage, {
  runs: replay.length > 0 ? 0 : number('runs'),
  maxSeconds: number('seconds'),
  seed,
  boundMs: number('bound-ms'),
  hangMs: number('hang-ms'),
  batch: Math.max(1, number('batch')),
  inputDirs:
    replay.length > 0
      ? replay
      : [
          join(root, 'fuzz/corpus', target.corpus ?? target.name),
          join(root, 'fuzz/regressions', target.name),
          // the corpus a long run grew, which it goes on from
          ...(values['save-corpus'] ? [join(root, 'var/fuzz/corpus', target.name)] : []),
        ],
  ...(values['save-corpus'] ? { saveCorpusDir: join(root, 'var/fuzz/corpus', target.name) } : {}),
  artifactDir: join(root, 'var/fuzz/findings'),
  log: (line) => console.log(line),
});
coverage.close();
const rate = Math.round(report.inputs / report.seconds);
console.log(
  `fuzz ${target.name}: ${report.inputs} inputs in ${report.seconds.toFixed(1)} s (${rate}/s), ` +
    `corpus ${report.corpus}, ${report.blocks} blocks, longest slice ${report.longest.cpuMs.toFixed(1)} ms CPU ` +
    `(bound ${number('bound-ms')} ms), seed ${seed}: ${report.finding === null ? 'no finding' : 'FINDING'}`,
);
process.exit(report.finding === null ? 0 : 1);
