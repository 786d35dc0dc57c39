import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineEndingNormaliser } from './line-endings.ts';

function normalise(chunks: string[]): { out: string; bareLf: number; bareCr: number } {
  const n = new LineEndingNormaliser();
  const pieces = chunks.map((c) => n.normalise(Buffer.from(c, 'latin1')));
  const rest = n.flushPending();
  const out = Buffer.concat(rest ? [...pieces, rest] : pieces);
  return { out: out.toString('latin1'), bareLf: n.bareLf, bareCr: n.bareCr };
}

describe('LineEndingNormaliser', () => {
  it('leaves CRLF text untouched', () => {
    const { out, bareLf, bareCr } = normalise(['a\r\nb\r\n', 'c\r\n']);
    assert.equal(out, 'a\r\nb\r\nc\r\n');
    assert.equal(bareLf + bareCr, 0);
  });

  for (const [name, input, expected] of [
    ['\\n.\\n', 'x\n.\nMAIL FROM:<a@b>\r\n', 'x\r\n.\r\nMAIL FROM:<a@b>\r\n'],
    ['\\n.\\r\\n', 'x\n.\r\nRCPT TO:<a@b>\r\n', 'x\r\n.\r\nRCPT TO:<a@b>\r\n'],
    ['\\r\\n.\\n', 'x\r\n.\nDATA\r\n', 'x\r\n.\r\nDATA\r\n'],
    ['\\r.\\r', 'x\r.\rQUIT\r\n', 'x\r\n.\r\nQUIT\r\n'],
  ] as const) {
    it(`rewrites ${name} so only CRLF line endings remain`, () => {
      const { out } = normalise([input]);
      assert.equal(out, expected);
      assert.equal(out.replace(/\r\n/g, '').match(/[\r\n]/), null);
    });
  }

  it('handles a CR at a chunk boundary, with and without its LF', () => {
    assert.equal(normalise(['a\r', '\nb']).out, 'a\r\nb');
    const bare = normalise(['a\r', 'b\r']);
    assert.equal(bare.out, 'a\r\nb\r\n');
    assert.equal(bare.bareCr, 2);
  });

  it('gives the same bytes however the input is split', () => {
    const input = 'one\rtwo\nthree\r\nfour\n\r.\r\n\r\r\n\n';
    const whole = normalise([input]);
    const bytewise = normalise([...input]);
    assert.equal(bytewise.out, whole.out);
    assert.equal(bytewise.bareCr, whole.bareCr);
    assert.equal(bytewise.bareLf, whole.bareLf);
    assert.equal(whole.out, 'one\r\ntwo\r\nthree\r\nfour\r\n\r\n.\r\n\r\n\r\n\r\n');
  });
});
