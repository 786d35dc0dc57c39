import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { LineEndingNormaliser } from './line-endings.ts';

async function normalise(chunks: string[]): Promise<{ out: string; bareLf: number; bareCr: number }> {
  const n = new LineEndingNormaliser();
  const out = await buffer(Readable.from(chunks.map((c) => Buffer.from(c, 'latin1'))).pipe(n));
  return { out: out.toString('latin1'), bareLf: n.bareLf, bareCr: n.bareCr };
}

describe('LineEndingNormaliser', () => {
  it('leaves CRLF text untouched', async () => {
    const { out, bareLf, bareCr } = await normalise(['a\r\nb\r\n', 'c\r\n']);
    assert.equal(out, 'a\r\nb\r\nc\r\n');
    assert.equal(bareLf + bareCr, 0);
  });

  for (const [name, input, expected] of [
    ['\\n.\\n', 'x\n.\nMAIL FROM:<a@b>\r\n', 'x\r\n.\r\nMAIL FROM:<a@b>\r\n'],
    ['\\n.\\r\\n', 'x\n.\r\nRCPT TO:<a@b>\r\n', 'x\r\n.\r\nRCPT TO:<a@b>\r\n'],
    ['\\r\\n.\\n', 'x\r\n.\nDATA\r\n', 'x\r\n.\r\nDATA\r\n'],
    ['\\r.\\r', 'x\r.\rQUIT\r\n', 'x\r\n.\r\nQUIT\r\n'],
  ] as const) {
    it(`rewrites ${name} so only CRLF line endings remain`, async () => {
      const { out } = await normalise([input]);
      assert.equal(out, expected);
      assert.equal(out.replace(/\r\n/g, '').match(/[\r\n]/), null);
    });
  }

  it('handles a CR at a chunk boundary, with and without its LF', async () => {
    assert.equal((await normalise(['a\r', '\nb'])).out, 'a\r\nb');
    const bare = await normalise(['a\r', 'b\r']);
    assert.equal(bare.out, 'a\r\nb\r\n');
    assert.equal(bare.bareCr, 2);
  });

  it('gives the same bytes however the input is split', async () => {
    const input = 'one\rtwo\nthree\r\nfour\n\r.\r\n\r\r\n\n';
    const whole = await normalise([input]);
    const bytewise = await normalise([...input]);
    assert.equal(bytewise.out, whole.out);
    assert.equal(bytewise.bareCr, whole.bareCr);
    assert.equal(bytewise.bareLf, whole.bareLf);
    assert.equal(whole.out, 'one\r\ntwo\r\nthree\r\nfour\r\n\r\n.\r\n\r\n\r\n\r\n');
  });
});
