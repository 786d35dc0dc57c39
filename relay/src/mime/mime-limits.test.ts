// Bounds on a message's MIME structure, and header parsing in one pass: no message may
// cost the scanner more than work in proportion to its size.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { DEFAULT_MIME_LIMITS } from '../config/schema.ts';
import { AttachmentScanner, type MimeLimits, type ScanResult } from './attachment-scan.ts';
import { parseHeaderBlock } from './header-block.ts';

const { Headers } = createRequire(import.meta.url)('mailsplit') as {
  Headers: {
    new (
      raw: Buffer,
    ): { getList(): { key: string; line: string }[]; mbox: string | false; http: string | false };
    prototype: { _parseHeaders(this: unknown): void };
  };
};

async function scan(message: string, limits: Partial<MimeLimits> = {}): Promise<ScanResult> {
  const scanner = new AttachmentScanner(['exe'], { limits: { ...DEFAULT_MIME_LIMITS, ...limits } });
  await pipeline(Readable.from([Buffer.from(message, 'latin1')]), scanner);
  return scanner.result();
}

/** A header with a Subject folded over `folds` continuation lines. */
const folded = (folds: number): string =>
  `From: a@example.com\r\nSubject: x\r\n${' a\r\n'.repeat(folds)}\r\nbody\r\n`;

function nested(depth: number): string {
  let inner = 'Content-Type: text/plain\r\n\r\nhi\r\n';
  for (let level = depth; level > 0; level--) {
    const b = `b${level}`;
    inner = `Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\n${inner}\r\n--${b}--\r\n`;
  }
  return `From: a@example.com\r\n${inner}`;
}

function parts(count: number): string {
  const part = '--b\r\nContent-Type: text/plain\r\n\r\nx\r\n';
  return `From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${part.repeat(count)}--b--\r\n`;
}

describe('parseHeaderBlock', () => {
  test("reads a block as mailsplit's Headers does", () => {
    let x = 7;
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const pieces = [
      'From x',
      'POST /',
      'Subject: a',
      'X-A:b',
      'no colon',
      ' folded',
      '\tfolded',
      '',
      ' ',
      'K: v\r',
    ];
    for (let round = 0; round < 500; round++) {
      const lines = Array.from({ length: 1 + rnd(12) }, () => pieces[rnd(pieces.length)] ?? '');
      const raw = Buffer.from(
        lines.join(rnd(3) === 0 ? '\n' : '\r\n') + ['', '\r\n', '\r\n\r\n', '\n'][rnd(4)],
      );
      const reference = new Headers(raw);
      const expected = { fields: reference.getList(), mbox: reference.mbox, http: reference.http };
      assert.deepEqual(parseHeaderBlock(raw), expected, JSON.stringify(raw.toString('latin1')));
    }
  });

  test("the scanner never runs mailsplit's own header parser (quadratic in folded lines)", async (t) => {
    const parse = t.mock.method(Headers.prototype, '_parseHeaders');
    const message = [
      'From: a@example.com',
      'Content-Type: multipart/mixed;',
      ' boundary="b"',
      '',
      '--b',
      'Content-Type: application/octet-stream;',
      '\tname="evil.exe"',
      '',
      'TVo=',
      '--b--',
      '',
    ].join('\r\n');
    assert.deepEqual(await scan(message), { kind: 'blocked', filename: 'evil.exe', extension: 'exe' });
    assert.equal(parse.mock.callCount(), 0);
  });
});

describe('the MIME bounds', () => {
  const lines = DEFAULT_MIME_LIMITS.maxHeaderLines;
  test(`header lines: ${lines} pass, one more is refused`, async () => {
    // From, Subject and the folded lines
    assert.deepEqual(await scan(folded(lines - 2)), { kind: 'clean' });
    assert.deepEqual(await scan(folded(lines - 1)), {
      kind: 'over-limit',
      bound: 'maxHeaderLines',
      limit: lines,
    });
  });

  test('header bytes of a part', async () => {
    const head = (bytes: number) => `From: a@example.com\r\nX-Pad: ${'p'.repeat(bytes - 30)}\r\n\r\n`;
    assert.deepEqual(await scan(`${head(1024)}body\r\n`, { maxHeaderBytes: 1024 }), { kind: 'clean' });
    assert.deepEqual(await scan(`${head(1025)}body\r\n`, { maxHeaderBytes: 1024 }), {
      kind: 'over-limit',
      bound: 'maxHeaderBytes',
      limit: 1024,
    });
  });

  test('the adversarial message: 100,000 folded header lines', async () => {
    assert.deepEqual(await scan(folded(100_000)), {
      kind: 'over-limit',
      bound: 'maxHeaderLines',
      limit: lines,
    });
    // with the bounds raised out of the way the header is read, in one pass
    const unbounded = { maxHeaderLines: 1_000_000, maxHeaderBytes: 1024 * 1024 };
    assert.deepEqual(await scan(folded(100_000), unbounded), { kind: 'clean' });
  });

  test('nesting depth', async () => {
    assert.deepEqual(await scan(nested(10), { maxMimeDepth: 10 }), { kind: 'clean' });
    assert.deepEqual(await scan(nested(11), { maxMimeDepth: 10 }), {
      kind: 'over-limit',
      bound: 'maxMimeDepth',
      limit: 10,
    });
    const deepest = DEFAULT_MIME_LIMITS.maxMimeDepth;
    assert.deepEqual(await scan(nested(deepest + 1)), {
      kind: 'over-limit',
      bound: 'maxMimeDepth',
      limit: deepest,
    });
  });

  test('parts', async () => {
    // the message and 19 parts
    assert.deepEqual(await scan(parts(19), { maxMimeParts: 20 }), { kind: 'clean' });
    assert.deepEqual(await scan(parts(20), { maxMimeParts: 20 }), {
      kind: 'over-limit',
      bound: 'maxMimeParts',
      limit: 20,
    });
    const most = DEFAULT_MIME_LIMITS.maxMimeParts;
    assert.deepEqual(await scan(parts(most + 100)), {
      kind: 'over-limit',
      bound: 'maxMimeParts',
      limit: most,
    });
  });

  test('parameters of Content-Type and Content-Disposition', async () => {
    const most = DEFAULT_MIME_LIMITS.maxMimeParameters;
    const disposition = (n: number) =>
      `From: a@example.com\r\nContent-Disposition: attachment${Array.from({ length: n }, (_, i) => `;\r\n filename*${i}*=a`).join('')}\r\n\r\nx\r\n`;
    assert.deepEqual(await scan(disposition(most)), { kind: 'clean' });
    const over = { kind: 'over-limit', bound: 'maxMimeParameters', limit: most };
    assert.deepEqual(await scan(disposition(most + 1)), over);
    // repeated fields count together; other fields do not count
    const repeated = `From: a@example.com\r\n${'Content-Type: text/plain; name=a\r\n'.repeat(most + 1)}\r\nx\r\n`;
    assert.deepEqual(await scan(repeated), over);
    const other = `From: a@example.com\r\nX-List: ${'a;'.repeat(5000)}\r\nContent-type : text/plain; charset=utf-8\r\n\r\nx\r\n`;
    assert.deepEqual(await scan(other), { kind: 'clean' });
  });
});
