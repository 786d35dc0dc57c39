import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsagePacer } from './usage-pacer.ts';

describe('UsagePacer (the usage write budget)', () => {
  it('writes oldest first, one entry per user with the newest value, and nothing after stop()', async () => {
    const written: Array<[string, number]> = [];
    let allDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      allDone = r;
    });
    const pacer = new UsagePacer<number>({
      perSecond: 200,
      write: async (uid, value) => {
        written.push([uid, value]);
        if (written.length === 3) allDone();
      },
    });
    pacer.offer('alice', 1);
    pacer.offer('bob', 1);
    pacer.offer('alice', 2); // replaces alice's waiting value, keeps her place
    pacer.offer('carol', 1);
    assert.equal(pacer.backlog, 3);
    await done;
    assert.deepEqual(written, [
      ['alice', 2],
      ['bob', 1],
      ['carol', 1],
    ]);
    pacer.offer('dave', 1);
    pacer.stop();
    assert.equal(pacer.backlog, 0);
    assert.equal(written.length, 3);
  });
});
