import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Readable, type Transform } from 'node:stream';
import { describe, it, mock } from 'node:test';
import { splitRandomly } from '../testing/random-input.ts';
import { FastSplitter } from './splitter.ts';

// mailsplit's own splitter is the reference: the relay's must emit the same parts, with
// the same bytes, in the same order, however the message is split into chunks.
const { Splitter } = createRequire(import.meta.url)('mailsplit') as {
  Splitter: new (options?: Record<string, unknown>) => Transform;
};

interface Emitted {
  type: string;
  value?: Buffer;
  getHeaders?: () => Buffer;
}

async function split(splitter: Transform, chunks: Buffer[]): Promise<string[]> {
  const seen: string[] = [];
  splitter.on('data', (part: Emitted) => {
    const bytes = part.type === 'node' ? part.getHeaders?.() : part.value;
    seen.push(`${part.type}|${bytes?.toString('latin1') ?? ''}`);
  });
  await new Promise<void>((resolve, reject) => {
    splitter.on('end', resolve).on('error', reject);
    Readable.from(chunks, { objectMode: false }).pipe(splitter);
  });
  return seen;
}

/** A random MIME message: nested multiparts, embedded messages, odd line ends, lines like boundaries. */
function randomMessage(seed: number): Buffer {
  let x = seed;
  const rnd = (n: number): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  const eol = (): string => (rnd(8) === 0 ? '\n' : '\r\n');
  const body = (lines: number, boundary: string): string => {
    let out = '';
    for (let i = 0; i < lines; i++) {
      const kind = rnd(6);
      if (kind === 0)
        out += `--${boundary}x${eol()}`; // looks like a boundary, is not one
      else if (kind === 1)
        out += eol(); // an empty line
      else out += `${'QUJD'.repeat(1 + rnd(19))}${eol()}`;
    }
    return out;
  };
  const entity = (depth: number): string => {
    const kind = depth > 2 ? 2 : rnd(4);
    if (kind === 0 || kind === 1) {
      const boundary = `b${seed}-${depth}-${rnd(1000)}`;
      let out = `Content-Type: multipart/mixed; boundary="${boundary}"${eol()}${eol()}preamble${eol()}`;
      const parts = 1 + rnd(3);
      for (let p = 0; p < parts; p++) {
        // mailsplit skips up to two leading bytes when one is CR: "\r\r--b" is a boundary to it
        const lead = rnd(6) === 0 ? '\r\r' : '';
        out += `${lead}--${boundary}${eol()}${entity(depth + 1)}${eol()}`;
      }
      if (rnd(5) !== 0) out += `--${boundary}--${eol()}epilogue${eol()}`; // sometimes never closed
      return out;
    }
    if (kind === 3) {
      const inline = rnd(2) === 0;
      const inner = `Subject: inner ${depth}${eol()}${eol()}${body(2, 'zz')}`;
      return inline
        ? `Content-Type: message/rfc822${eol()}Content-Disposition: inline${eol()}${eol()}${inner}`
        : `Content-Type: message/rfc822${eol()}Content-Transfer-Encoding: base64${eol()}${eol()}${Buffer.from(inner).toString('base64')}${eol()}`;
    }
    return `Content-Type: application/pdf; name="f${rnd(100)}.pdf"${eol()}Content-Transfer-Encoding: base64${eol()}${eol()}${body(1 + rnd(8), `b${seed}`)}`;
  };
  return Buffer.from(`From: a@example.com${eol()}Subject: s${seed}${eol()}${entity(0)}`, 'latin1');
}

describe('the MIME splitter', () => {
  it('emits what mailsplit emits, for random messages split at random points', async () => {
    for (let seed = 1; seed <= 120; seed++) {
      const message = randomMessage(seed);
      const chunks = seed % 3 === 0 ? [message] : splitRandomly(message, seed, 1 + (seed % 200));
      for (const options of [{ ignoreEmbedded: true }, {}]) {
        const expected = await split(new Splitter(options), chunks);
        const actual = await split(new FastSplitter(options), chunks);
        assert.deepEqual(actual, expected, `seed ${seed} ${JSON.stringify(options)}`);
      }
    }
  });

  it('copies a long line sent in small chunks a bounded number of times, not once per chunk', async () => {
    const message = Buffer.from(`Subject: x\r\n\r\n${'a'.repeat(256 * 1024)}\r\nend\r\n`);
    const chunks = Array.from({ length: Math.ceil(message.length / 64) }, (_, i) =>
      message.subarray(i * 64, i * 64 + 64),
    );
    const concat = Buffer.concat;
    let copied = 0;
    const spy = mock.method(Buffer, 'concat', (list: readonly Uint8Array[], length?: number) => {
      const joined = concat(list, length);
      copied += joined.length;
      return joined;
    });
    try {
      const expected = await split(new Splitter({}), chunks);
      copied = 0;
      assert.deepEqual(await split(new FastSplitter({}), chunks), expected);
    } finally {
      spy.mock.restore();
    }
    // the line is joined once, and once more by mailsplit with its line end
    assert.ok(copied <= 3 * message.length, `${copied} bytes copied for a ${message.length}-byte message`);
  });
});
