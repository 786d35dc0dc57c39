import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GroupCommitter } from './group-commit.ts';

/** An fsync the test completes by hand, so "in flight" is exact rather than timed. */
function manualFsync() {
  const calls: Array<{ dir: string; done: (err?: Error) => void }> = [];
  const fsyncDir = (dir: string) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ dir, done: (err) => (err ? reject(err) : resolve()) });
    });
  return { calls, fsyncDir };
}

const settled = (p: Promise<unknown>) => {
  const state = { done: false, error: undefined as unknown };
  p.then(
    () => {
      state.done = true;
    },
    (err: unknown) => {
      state.done = true;
      state.error = err;
    },
  );
  return state;
};

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('GroupCommitter', () => {
  it('lets every sync that arrives during an fsync share the next one', async () => {
    const { calls, fsyncDir } = manualFsync();
    const committer = new GroupCommitter({ enabled: true, fsyncDir });
    const first = settled(committer.sync('/q'));
    assert.equal(calls.length, 1);
    const joiners = Array.from({ length: 10 }, () => settled(committer.sync('/q')));
    await turn();
    assert.equal(calls.length, 1, 'joiners wait for the fsync in flight to end');
    calls[0]!.done();
    await turn();
    assert.equal(first.done, true);
    // the fsync in flight may predate the joiners' renames, so they need one of their own
    assert.ok(joiners.every((j) => !j.done));
    assert.equal(calls.length, 2);
    calls[1]!.done();
    await turn();
    assert.ok(joiners.every((j) => j.done && j.error === undefined));
    assert.equal(committer.fsyncs, 2);
    assert.equal(committer.requests, 11);
  });

  it('keeps directories apart', async () => {
    const { calls, fsyncDir } = manualFsync();
    const committer = new GroupCommitter({ enabled: true, fsyncDir });
    const a = settled(committer.sync('/a'));
    const b = settled(committer.sync('/b'));
    assert.deepEqual(
      calls.map((c) => c.dir),
      ['/a', '/b'],
    );
    calls[1]!.done();
    await turn();
    assert.equal(a.done, false);
    assert.equal(b.done, true);
    calls[0]!.done();
    await turn();
    assert.equal(a.done, true);
  });

  it('does one fsync per call when disabled', async () => {
    const { calls, fsyncDir } = manualFsync();
    const committer = new GroupCommitter({ enabled: false, fsyncDir });
    const all = Array.from({ length: 5 }, () => settled(committer.sync('/q')));
    assert.equal(calls.length, 5);
    for (const call of calls) call.done();
    await turn();
    assert.ok(all.every((s) => s.done));
    assert.equal(committer.fsyncs, 5);
  });

  it('fails the callers of a failed fsync and still serves the next batch', async () => {
    const { calls, fsyncDir } = manualFsync();
    const committer = new GroupCommitter({ enabled: true, fsyncDir });
    const first = settled(committer.sync('/q'));
    const second = settled(committer.sync('/q'));
    calls[0]!.done(new Error('EIO'));
    await turn();
    assert.equal((first.error as Error).message, 'EIO');
    assert.equal(second.done, false);
    calls[1]!.done();
    await turn();
    assert.equal(second.done, true);
    assert.equal(second.error, undefined);
    // idle again: a new call starts its own fsync at once
    const third = settled(committer.sync('/q'));
    assert.equal(calls.length, 3);
    calls[2]!.done();
    await turn();
    assert.equal(third.done, true);
  });
});
