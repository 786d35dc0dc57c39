import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateAnswers, parseCodeRanges } from './evaluate.ts';

const XBL = { listedCodes: ['127.0.0.4-127.0.0.7'] };

describe('parseCodeRanges', () => {
  it('reads single answers and inclusive ranges', () => {
    assert.deepEqual(parseCodeRanges(['127.0.0.2', '127.0.0.4-127.0.0.7']), [
      { first: 0x7f000002, last: 0x7f000002 },
      { first: 0x7f000004, last: 0x7f000007 },
    ]);
  });

  it('refuses malformed entries and reversed ranges', () => {
    for (const bad of [
      '',
      '127.0.0',
      '127.0.0.256',
      '127.0.0.7-127.0.0.4',
      '127.0.0.1-127.0.0.2-127.0.0.3',
      'x',
    ]) {
      assert.throws(() => parseCodeRanges([bad]), RangeError, bad);
    }
  });
});

describe('evaluateAnswers', () => {
  it('lists an answer inside the filter, naming the code', () => {
    assert.deepEqual(evaluateAnswers(['127.0.0.4'], XBL), { kind: 'listed', code: '127.0.0.4' });
    assert.deepEqual(evaluateAnswers(['127.0.0.7'], XBL), { kind: 'listed', code: '127.0.0.7' });
  });

  it('lists when any of several answers is inside the filter', () => {
    assert.deepEqual(evaluateAnswers(['127.0.0.2', '127.0.0.5'], XBL), { kind: 'listed', code: '127.0.0.5' });
  });

  it('is clear for 127.x answers outside this zone filter (e.g. an SBL code in zen)', () => {
    assert.deepEqual(evaluateAnswers(['127.0.0.2'], XBL), { kind: 'clear' });
    assert.deepEqual(evaluateAnswers(['127.0.0.8', '127.0.0.3'], XBL), { kind: 'clear' });
  });

  it('is clear for no answer (NXDOMAIN)', () => {
    assert.deepEqual(evaluateAnswers([], XBL), { kind: 'clear' });
  });

  it('treats the Spamhaus refusal codes as errors, even inside a wide filter', () => {
    const everything = { listedCodes: ['127.0.0.0-127.255.255.255'] };
    for (const code of ['127.255.255.252', '127.255.255.254', '127.255.255.255']) {
      assert.deepEqual(evaluateAnswers([code], XBL), { kind: 'error', code });
      assert.deepEqual(evaluateAnswers([code], everything), { kind: 'error', code });
    }
  });

  it('treats any answer outside 127.0.0.0/8 as an error, never a listing', () => {
    assert.deepEqual(evaluateAnswers(['10.0.0.1'], XBL), { kind: 'error', code: '10.0.0.1' });
    // A hijacking resolver answering NXDOMAIN with its own address next to a real code.
    assert.deepEqual(evaluateAnswers(['127.0.0.4', '198.51.100.1'], XBL), {
      kind: 'error',
      code: '198.51.100.1',
    });
    assert.deepEqual(evaluateAnswers(['128.0.0.1'], XBL), { kind: 'error', code: '128.0.0.1' });
    assert.deepEqual(evaluateAnswers(['not-an-address'], XBL), { kind: 'error', code: 'not-an-address' });
  });

  it('uses pre-parsed ranges when given them', () => {
    const ranges = parseCodeRanges(['127.0.0.2']);
    assert.deepEqual(evaluateAnswers(['127.0.0.2'], XBL, ranges), { kind: 'listed', code: '127.0.0.2' });
  });
});
