import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Readable, type Transform } from 'node:stream';
import { describe, it } from 'node:test';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { randomFrom, splitRandomly } from '../testing/random-input.ts';
import { DotStuffer, StuffingSMTPConnection, stuff } from './dot-stuffing.ts';

// nodemailer's own DATA encoder is the reference: the relay's must write the same bytes.
// It is not exported, so it is loaded from the installed package by path.
const require = createRequire(import.meta.url);
const NodemailerDataStream =
  require('../../../node_modules/nodemailer/dist/cjs/smtp-connection/data-stream.js')
    .default as new () => Transform;

async function encode(stream: Transform, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  stream.on('data', (c: Buffer) => out.push(c));
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve).on('error', reject);
    Readable.from(chunks, { objectMode: false }).pipe(stream);
  });
  return Buffer.concat(out);
}

describe('DATA encoding for delivery', () => {
  it('writes what nodemailer writes, for bare CR, bare LF and dots across any chunk boundary', async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const input = randomFrom('\r\n.\r\n.a.b\r\r\n\n.', seed, 1 + (seed % 61));
      const chunks = splitRandomly(input, seed, 7);
      const expected = await encode(new NodemailerDataStream(), chunks);
      const ours = new DotStuffer();
      const actual = await encode(ours, chunks);
      assert.equal(
        actual.toString('latin1'),
        expected.toString('latin1'),
        `input ${JSON.stringify(input.toString('latin1'))}`,
      );
      assert.equal(ours.inByteCount, input.length);
      assert.equal(ours.outByteCount, expected.length);
    }
  });

  it('writes what nodemailer writes for CRLF-only text, as spooled, split anywhere', async () => {
    for (let seed = 1; seed <= 300; seed++) {
      // lines of dots and letters: many start with a dot, none has a bare CR or LF
      const lines = randomFrom('..ab', seed, 1 + (seed % 97))
        .toString('latin1')
        .split('b');
      const input = Buffer.from(lines.join('\r\n'), 'latin1');
      const chunks = splitRandomly(input, seed, 1 + (seed % 13));
      const expected = await encode(new NodemailerDataStream(), chunks);
      // checked for bare line ends, and trusted to have none (crlfOnly, as the spool says)
      for (const crlfOnly of [false, true]) {
        const actual = await encode(new DotStuffer({ crlfOnly }), chunks);
        assert.equal(
          actual.toString('latin1'),
          expected.toString('latin1'),
          `input ${JSON.stringify(lines)}, crlfOnly ${crlfOnly}`,
        );
      }
    }
  });

  it('doubles leading dots and ends the data, leaving canonical text as it is', async () => {
    const text = Buffer.from('Subject: x\r\n\r\n.hidden\r\n.\r\nlast\r\n');
    assert.equal(
      (await encode(new DotStuffer(), [text])).toString(),
      'Subject: x\r\n\r\n..hidden\r\n..\r\nlast\r\n.\r\n',
    );
    const plain = Buffer.from('a\r\nb\r\n');
    assert.equal(stuff(plain, -1), plain, 'nothing to change: the chunk itself, not a copy');
  });

  it('cannot be made to end the data early with a bare CR or LF before a dot', async () => {
    const smuggle = Buffer.from('a\r\n\r.\rMAIL FROM:<x@y>\n.\nb\r\n');
    const out = (await encode(new DotStuffer(), [smuggle])).toString();
    assert.equal(out.indexOf('\r\n.\r\n'), out.length - 5, 'the only end-of-data is the real one');
    assert.equal(out, 'a\r\n\r\n..\r\nMAIL FROM:<x@y>\r\n..\r\nb\r\n.\r\n');
  });

  it('replaces a method nodemailer still has (an upgrade that renames it fails here)', () => {
    const base = SMTPConnection.prototype as unknown as Record<string, unknown>;
    assert.equal(typeof base._createSendStream, 'function');
    assert.notEqual(StuffingSMTPConnection.prototype._createSendStream, base._createSendStream);
  });
});
