// Runs a target that leaves a rejected promise behind, in a process of its own: the test
// runner would take the rejection for its own test's failure.
import { CoverageMap } from '../coverage.ts';
import { fuzz } from '../fuzz-loop.ts';

const report = await fuzz(
  {
    name: 'leaky',
    maxLength: 4,
    run: async () => {
      Promise.reject(new Error('nobody awaited me'));
    },
  },
  new CoverageMap([]),
  {
    runs: 1,
    maxSeconds: 60,
    seed: 1,
    inputDirs: [],
    artifactDir: process.argv[2] ?? '',
    boundMs: 50,
    hangMs: 10_000,
    batch: 8,
    log: () => {},
  },
);
console.log(JSON.stringify(report.finding));
