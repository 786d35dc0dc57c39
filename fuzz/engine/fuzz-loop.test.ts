import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CoverageMap } from './coverage.ts';
import { type FuzzOptions, type FuzzTarget, fuzz } from './fuzz-loop.ts';

const run = promisify(execFile);
let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-fuzz-loop-'));
  await writeFile(join(dir, 'seed'), Buffer.alloc(5));
});
after(() => rm(dir, { recursive: true, force: true }));

function options(extra: Partial<FuzzOptions> = {}): FuzzOptions {
  return {
    runs: 40_000,
    maxSeconds: 120,
    seed: 7,
    inputDirs: [join(dir, 'seed')],
    artifactDir: join(dir, 'findings'),
    boundMs: 50,
    hangMs: 10_000,
    batch: 256,
    log: () => {},
    ...extra,
  };
}

describe('fuzz loop', () => {
  // coverage starts before the code under test is loaded, as fuzz.ts does it
  const coverage = new CoverageMap(['/fuzz/engine/testdata/']);
  const blind = new CoverageMap([]);
  let target: FuzzTarget;
  before(async () => {
    const { guarded } = await import('./testdata/guarded.ts');
    target = { name: 'guarded', maxLength: 16, run: async (input) => guarded(input) };
  });
  after(() => {
    coverage.close();
  });

  it('reaches a bug behind five nested checks when coverage guides it, and writes its input', async () => {
    const report = await fuzz(target, coverage, options());
    assert.ok(report.finding, `no finding in ${report.inputs} inputs`);
    assert.match(report.finding.message, /reached the guarded bug/);
    const input = await readFile(report.finding.artifact);
    assert.doesNotThrow(() => input.length >= 5, `artifact ${input.toString('hex')}`);
    const { guarded } = await import('./testdata/guarded.ts');
    assert.throws(() => guarded(input), /reached the guarded bug/);
  });

  it('does not reach it in as many inputs without coverage (the same mutator, blind)', async () => {
    const report = await fuzz(target, blind, options());
    assert.equal(report.finding, null);
    assert.equal(report.inputs, 40_000);
  });

  it('reports an event-loop stall that recurs, and a hang', async () => {
    const slow: FuzzTarget = {
      name: 'slow',
      maxLength: 4,
      run: async (_input, probe) => {
        await probe.slice(() => {
          // well over the bound even if a busy machine gives this thread a third of a core
          const until = performance.now() + 300;
          while (performance.now() < until) {}
        });
      },
    };
    const stalled = await fuzz(slow, blind, options({ runs: 1 }));
    assert.match(
      stalled.finding?.message ?? '',
      /event loop stalled: the longest slice took .* in three runs, bound 50 ms/,
    );
    const hung: FuzzTarget = { name: 'hung', maxLength: 4, run: () => new Promise(() => {}) };
    const hang = await fuzz(hung, blind, options({ runs: 1, hangMs: 200 }));
    assert.match(hang.finding?.message ?? '', /hang: the input was not done after 200 ms/);
  });

  it('reports a rejection that escaped the target', async () => {
    const { stdout } = await run(process.execPath, [
      join(import.meta.dirname, 'testdata/escape.ts'),
      join(dir, 'escape'),
    ]);
    const finding = JSON.parse(stdout) as { message: string; artifact: string };
    assert.match(
      finding.message,
      /^escaped the target \(uncaught exception or unhandled rejection\): Error: nobody awaited me/,
    );
  });
});
