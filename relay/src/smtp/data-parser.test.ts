import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { randomFrom, splitRandomly } from '../testing/random-input.ts';
import { SluiceParser } from './data-parser.ts';

// smtp-server's own parser is the reference: the relay's must hand the application the
// same message bytes and the same commands after the data, however the input is split.

interface Seen {
  data: string;
  commands: string[];
  bytes: number;
}

async function parse(parser: SMTPStream, chunks: Buffer[]): Promise<Seen> {
  const seen: Seen = { data: '', commands: [], bytes: 0 };
  parser.oncommand = (command, callback) => {
    seen.commands.push(command.toString('latin1'));
    callback?.();
  };
  const stream = parser.startDataMode();
  stream.on('data', (c: Buffer) => {
    seen.data += c.toString('latin1');
  });
  stream.on('end', () => {
    seen.bytes = stream.byteLength;
    parser.continue();
  });
  for (const chunk of chunks) {
    await new Promise<void>((resolve) => parser.write(chunk, () => resolve()));
  }
  for (let i = 0; i < 20; i++) await tick();
  return seen;
}

describe('DATA parsing', () => {
  it('gives the same message and the same following commands as smtp-server, for any split', async () => {
    for (let seed = 1; seed <= 1200; seed++) {
      // dot-heavy input, and (every third) text whose dots are rare
      const alphabet = seed % 3 === 0 ? 'abcdefgh\r\n.' : '\r\n.\r\n..ab\r\n.\r\n';
      const input = Buffer.concat([
        randomFrom(alphabet, seed, seed % 120),
        Buffer.from('\r\n.\r\nRSET\r\nQUIT\r\n'),
      ]);
      const chunks = splitRandomly(input, seed, seed % 2 === 0 ? 9 : 40);
      const expected = await parse(new SMTPStream(), chunks);
      const actual = await parse(new SluiceParser(), chunks);
      assert.deepEqual(actual, expected, `input ${JSON.stringify(input.toString('latin1'))}`);
    }
  });

  it('removes escape dots and stops at the end of data', async () => {
    const seen = await parse(new SluiceParser(), [
      Buffer.from('Subject: x\r\n\r\n..one\r\n...\r\nend\r\n.\r\nQUIT\r\n'),
    ]);
    assert.equal(seen.data, 'Subject: x\r\n\r\n.one\r\n..\r\nend\r\n');
    assert.deepEqual(seen.commands, ['QUIT']);
    assert.equal(seen.bytes, seen.data.length);
  });
});
