import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomFrom } from '../testing/random-input.ts';
import { LineDots } from './line-dots.ts';

const LF_DOT = Buffer.from('\n.');

describe('finding dots that start a line', () => {
  it('finds what indexOf("\\n.") finds, before and after text with many mid-line dots', () => {
    const inputs: Buffer[] = [];
    for (let seed = 1; seed <= 400; seed++) {
      // dot-heavy text (the search goes over to "\n.") and dot-free text (it never does)
      inputs.push(randomFrom(seed % 2 === 0 ? '...\nab' : 'abcd\r\n', seed, 1 + (seed % 300)));
    }
    // a line-leading dot right after the mid-line dot that makes the search change over
    for (let misses = 0; misses <= 12; misses++) {
      for (const tail of ['\n.', '.\n.', '\n..\n.', 'a\n.']) {
        inputs.push(Buffer.from(`${'a.'.repeat(misses)}${tail}x\r\n.y`));
      }
    }
    for (const [n, buf] of inputs.entries()) {
      const seed = n + 1;
      const step = 1 + (seed % 3);
      const dots = new LineDots(buf);
      const expected: number[] = [];
      const actual: number[] = [];
      for (let at = buf.indexOf(LF_DOT); at !== -1; at = buf.indexOf(LF_DOT, at + step)) expected.push(at);
      for (let at = dots.next(0); at !== -1; at = dots.next(at + step)) actual.push(at);
      assert.deepEqual(actual, expected, `input ${JSON.stringify(buf.toString('latin1'))}`);
    }
  });
});
