import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Options as ComposerOptions } from 'nodemailer/lib/mail-composer/index.js';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { DEFAULT_MIME_LIMITS } from '../config/schema.ts';
import { zip } from '../testing/zip.ts';
import { AttachmentScanner, DEFAULT_BLOCKED_EXTENSIONS, type ScanResult } from './attachment-scan.ts';
import { headerEnd, isPlainText } from './plain-text.ts';

const CLEAN: ScanResult = { kind: 'clean' };
const blocked = (filename: string, extension = 'exe'): ScanResult => ({
  kind: 'blocked',
  filename,
  extension,
});

async function scan(
  message: Buffer | string,
  chunkSize = Number.POSITIVE_INFINITY,
  extensions: readonly string[] = DEFAULT_BLOCKED_EXTENSIONS,
  plainText = true,
): Promise<ScanResult> {
  const bytes = Buffer.from(message);
  const scanner = new AttachmentScanner(extensions, { plainText });
  await pipeline(Readable.from(chunks(bytes, chunkSize)), scanner);
  return scanner.result();
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Scans whole and in 1-byte chunks; both must agree. */
async function scanBothWays(message: Buffer | string, extensions?: readonly string[]): Promise<ScanResult> {
  const whole = await scan(message, Number.POSITIVE_INFINITY, extensions);
  const byByte = await scan(message, 1, extensions);
  assert.deepEqual(byByte, whole, 'a message written in 1-byte chunks gives a different answer');
  return whole;
}

function compose(options: ComposerOptions): Promise<Buffer> {
  return new MailComposer({
    from: 'a@example.com',
    to: 'b@example.com',
    subject: 'test',
    text: 'hi',
    ...options,
  })
    .compile()
    .build();
}

// Hand-written MIME, for what MailComposer cannot express: it always writes the name both
// as Content-Type name (RFC 2047) and Content-Disposition filename (RFC 2231).
const BOUNDARY = 'sluice-test-boundary';

function multipart(...parts: string[]): string {
  return [
    'From: a@example.com',
    'To: b@example.com',
    'Subject: test',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`,
    '',
    'This is a multi-part message in MIME format.',
    ...parts.flatMap((part) => [`--${BOUNDARY}`, part]),
    `--${BOUNDARY}--`,
    '',
  ].join('\r\n');
}

const textPart = ['Content-Type: text/plain; charset=utf-8', '', 'Hello,', 'see attached.'].join('\r\n');

function attachment(...headers: string[]): string {
  return [...headers, 'Content-Transfer-Encoding: base64', '', 'TVo='].join('\r\n');
}

function embedded(message: string, disposition = 'attachment; filename="forwarded.eml"'): string {
  const base64 = Buffer.from(message).toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    'Content-Type: message/rfc822',
    `Content-Disposition: ${disposition}`,
    'Content-Transfer-Encoding: base64',
    '',
    base64,
  ].join('\r\n');
}

describe('AttachmentScanner finds blocked names', () => {
  const cases: [string, () => Promise<Buffer | string> | string, ScanResult][] = [
    [
      'a composed attachment',
      () => compose({ attachments: [{ filename: 'evil.exe', content: 'MZ' }] }),
      blocked('evil.exe'),
    ],
    [
      'a composed non-ASCII name (RFC 2231 and RFC 2047)',
      () => compose({ attachments: [{ filename: 'Résumé €.exe', content: 'MZ' }] }),
      blocked('Résumé €.exe'),
    ],
    [
      'RFC 2047 B encoded word',
      () =>
        multipart(
          textPart,
          attachment('Content-Disposition: attachment; filename="=?UTF-8?B?ZXZpbC5leGU=?="'),
        ),
      blocked('evil.exe'),
    ],
    [
      'RFC 2047 Q encoded word in ISO-8859-1',
      () =>
        multipart(attachment('Content-Type: application/octet-stream; name="=?iso-8859-1?Q?=E9vil.exe?="')),
      blocked('évil.exe'),
    ],
    [
      'parameter names in upper and mixed case, folded',
      () =>
        multipart(
          textPart,
          attachment('Content-Disposition: attachment;\r\n\tFILENAME="report.pdf"'),
          attachment("Content-Type: application/octet-stream;\r\n NaMe*=utf-8''evil%2Eexe"),
        ),
      blocked('evil.exe'),
    ],
    [
      'RFC 2231 continuations with a charset',
      () =>
        multipart(attachment("Content-Disposition: attachment; filename*0*=utf-8''ev; filename*1*=il.exe")),
      blocked('evil.exe'),
    ],
    [
      'RFC 2231 percent-encoded UTF-8',
      () => multipart(attachment("Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC.exe")),
      blocked('€.exe'),
    ],
    [
      'RFC 2231 folded over lines',
      () =>
        multipart(
          attachment("Content-Disposition: attachment;\r\n filename*0*=utf-8''ev;\r\n\tfilename*1*=il.exe"),
        ),
      blocked('evil.exe'),
    ],
    [
      'upper case',
      () => multipart(attachment('Content-Disposition: attachment; filename="EVIL.EXE"')),
      blocked('EVIL.EXE'),
    ],
    [
      'a trailing dot',
      () => multipart(attachment('Content-Disposition: attachment; filename="evil.exe."')),
      blocked('evil.exe.'),
    ],
    [
      'trailing spaces',
      () => multipart(attachment('Content-Disposition: attachment; filename="evil.exe  "')),
      blocked('evil.exe  '),
    ],
    [
      'trailing dots and spaces',
      () => multipart(attachment('Content-Disposition: attachment; filename="evil.exe . "')),
      blocked('evil.exe . '),
    ],
    [
      'a Windows path',
      () => multipart(attachment('Content-Disposition: attachment; filename="C:\\\\temp\\\\evil.exe"')),
      blocked('C:\\temp\\evil.exe'),
    ],
    [
      'a relative path',
      () => multipart(attachment('Content-Disposition: attachment; filename="dir/evil.exe"')),
      blocked('dir/evil.exe'),
    ],
    [
      'a name only in Content-Type',
      () => multipart(textPart, attachment('Content-Type: application/octet-stream; name="evil.exe"')),
      blocked('evil.exe'),
    ],
    [
      'a name only in Content-Disposition',
      () => multipart(textPart, attachment('Content-Disposition: attachment; filename="evil.exe"')),
      blocked('evil.exe'),
    ],
    [
      'a blocked Content-Type name beside a harmless disposition filename',
      () =>
        multipart(
          attachment(
            'Content-Type: application/octet-stream; name="evil.exe"',
            'Content-Disposition: attachment; filename="report.pdf"',
          ),
        ),
      blocked('evil.exe'),
    ],
    [
      'the second of two filename parameters',
      () =>
        multipart(attachment('Content-Disposition: attachment; filename="report.pdf"; filename="evil.exe"')),
      blocked('evil.exe'),
    ],
    [
      'a legacy fallback that RFC 2231 overrides',
      () =>
        multipart(
          attachment('Content-Disposition: attachment; filename="evil.exe"; filename*=utf-8\'\'report.pdf'),
        ),
      blocked('evil.exe'),
    ],
    [
      'the second Content-Disposition header',
      () =>
        multipart(
          attachment(
            'Content-Disposition: attachment; filename="report.pdf"',
            'Content-Disposition: attachment; filename="evil.exe"',
          ),
        ),
      blocked('evil.exe'),
    ],
    [
      'a single-part message that is the attachment',
      () =>
        [
          'From: a@example.com',
          'MIME-Version: 1.0',
          'Content-Type: application/x-msdownload; name="evil.exe"',
          'Content-Transfer-Encoding: base64',
          '',
          'TVo=',
          '',
        ].join('\r\n'),
      blocked('evil.exe'),
    ],
    [
      'the second of several attachments, after a clean one',
      () =>
        compose({
          attachments: [
            { filename: 'report.pdf', content: 'PDF' },
            { filename: 'setup.msi', content: 'MSI' },
            { filename: 'evil.exe', content: 'MZ' },
          ],
        }),
      blocked('setup.msi', 'msi'),
    ],
    [
      'an attached message/rfc822 (composed: inline, 7bit)',
      async () =>
        compose({
          attachments: [
            {
              filename: 'forwarded.eml',
              contentType: 'message/rfc822',
              content: await compose({ attachments: [{ filename: 'evil.exe', content: 'MZ' }] }),
            },
          ],
        }),
      blocked('evil.exe'),
    ],
    [
      'an attached message/rfc822 (attachment, base64)',
      () =>
        multipart(
          textPart,
          embedded(multipart(textPart, attachment('Content-Disposition: attachment; filename="evil.exe"'))),
        ),
      blocked('evil.exe'),
    ],
    [
      'a message nested twice (composed)',
      async () => {
        const inner = await compose({ attachments: [{ filename: 'evil.exe', content: 'MZ' }] });
        const middle = await compose({
          attachments: [{ filename: 'inner.eml', contentType: 'message/rfc822', content: inner }],
        });
        return compose({
          attachments: [{ filename: 'middle.eml', contentType: 'message/rfc822', content: middle }],
        });
      },
      blocked('evil.exe'),
    ],
    [
      'a message nested twice (attachment, base64, then inline, 7bit)',
      async () => {
        const inner = await compose({ attachments: [{ filename: 'evil.exe', content: 'MZ' }] });
        const middle = await compose({
          attachments: [{ filename: 'inner.eml', contentType: 'message/rfc822', content: inner }],
        });
        return multipart(
          textPart,
          embedded(middle.toString()),
          attachment('Content-Type: text/plain; name=z.txt'),
        );
      },
      blocked('evil.exe'),
    ],
  ];
  for (const [name, build, expected] of cases) {
    test(name, async () => {
      assert.deepEqual(await scanBothWays(await build()), expected);
    });
  }
});

describe('AttachmentScanner passes clean messages', () => {
  const cases: [string, () => Promise<Buffer | string> | string][] = [
    ['report.pdf', () => compose({ attachments: [{ filename: 'report.pdf', content: '%PDF' }] })],
    ['"exe" without a dot', () => multipart(attachment('Content-Disposition: attachment; filename="exe"'))],
    ['evil.exe.pdf', () => compose({ attachments: [{ filename: 'evil.exe.pdf', content: '%PDF' }] })],
    [
      'an embedded message with clean attachments',
      async () =>
        multipart(
          embedded((await compose({ attachments: [{ filename: 'a.docx', content: 'x' }] })).toString()),
        ),
    ],
    ['a plain text message without MIME', () => 'From: a@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n'],
    ['a body without headers', () => 'hello\r\n'],
    ['a body mentioning evil.exe', () => compose({ text: 'please run evil.exe\r\nfilename="evil.exe"' })],
    ['an empty message', () => ''],
  ];
  for (const [name, build] of cases) {
    test(name, async () => {
      assert.deepEqual(await scanBothWays(await build()), CLEAN);
    });
  }

  test('end() without any write', async () => {
    const scanner = new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS);
    scanner.end();
    assert.deepEqual(await scanner.result(), CLEAN);
  });
});

test('the blocked list is configurable and normalised', async () => {
  const message = await compose({
    attachments: [
      { filename: 'evil.exe', content: 'MZ' },
      { filename: 'macro.docm', content: 'x' },
    ],
  });
  assert.deepEqual(await scanBothWays(message, ['PDF', '.DocM']), blocked('macro.docm', 'docm'));
  assert.deepEqual(await scanBothWays(message, []), CLEAN);
});

describe('AttachmentScanner reports malformed messages', () => {
  test('a line without end', async () => {
    const message = `Subject: x\r\n\r\n${'a'.repeat(3 * 1024 * 1024)}`;
    const result = await scan(message, 64 * 1024);
    assert.equal(result.kind, 'malformed');
  });

  test('messages nested too deep', async () => {
    let message = multipart(textPart);
    for (let i = 0; i < 12; i++) message = multipart(embedded(message));
    const result = await scan(message);
    assert.equal(result.kind, 'malformed');
  });
});

// A deadlock would otherwise hang the run; this bound is a guard, not a timing check.
const STREAM_TEST = { timeout: 60_000 };

describe('AttachmentScanner streams', () => {
  const heads: [string, string][] = [
    ['a top-level attachment', multipart(attachment('Content-Disposition: attachment; filename="evil.exe"'))],
    [
      'an attachment in an embedded message',
      multipart(embedded(multipart(attachment('Content-Disposition: attachment; filename="evil.exe"')))),
    ],
  ];
  for (const [name, head] of heads) {
    test(`keeps draining after finding ${name}, so the writer never stalls`, STREAM_TEST, async () => {
      const tail = Buffer.alloc(8 * 1024 * 1024, 'x\r\n');
      let written = 0;
      function* source(): Generator<Buffer> {
        yield Buffer.from(head);
        for (const chunk of chunks(tail, 16 * 1024)) {
          written += chunk.length;
          yield chunk;
        }
      }
      const scanner = new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS);
      await pipeline(Readable.from(source()), scanner);
      assert.equal(written, tail.length);
      assert.deepEqual(await scanner.result(), blocked('evil.exe'));
    });
  }

  test('finds a blocked attachment at the end of a 20 MB message in little memory', STREAM_TEST, async () => {
    // Written by hand from one reused buffer: a composed message allocates (and leaves for
    // the GC) more than the scanner does, which would drown what this test measures.
    const head = [
      'From: a@example.com',
      'MIME-Version: 1.0',
      `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`,
      '',
      `--${BOUNDARY}`,
      'Content-Type: application/octet-stream; name="data.bin"',
      'Content-Transfer-Encoding: base64',
      '',
      '',
    ].join('\r\n');
    const block = Buffer.from(`${'c2x1aWNl'.repeat(9)}AAAA\r\n`.repeat(840));
    const tail = [
      '',
      `--${BOUNDARY}`,
      attachment('Content-Disposition: attachment; filename="evil.exe"'),
      `--${BOUNDARY}--`,
      '',
    ].join('\r\n');
    function* message(fillerBytes: number): Generator<Buffer> {
      yield Buffer.from(head);
      for (let sent = 0; sent < fillerBytes; sent += block.length) yield block;
      yield Buffer.from(tail);
    }
    // rss also counts garbage V8 has not collected yet (mailsplit makes plenty); collecting
    // every MiB makes rss follow what the scanner keeps alive.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const MiB = 1024 * 1024;
    let size = 0;
    let peak = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (Math.floor((size + chunk.length) / MiB) > Math.floor(size / MiB)) gc();
        size += chunk.length;
        peak = Math.max(peak, process.memoryUsage.rss());
        callback(null, chunk);
      },
    });

    // Warm up first, so the heap the parser needs in steady state is in the baseline.
    await pipeline(Readable.from(message(2 * MiB)), new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS));
    gc();
    const baseline = process.memoryUsage.rss();
    const scanner = new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS);
    await pipeline(Readable.from(message(20 * MiB)), meter, scanner);

    assert.deepEqual(await scanner.result(), blocked('evil.exe'));
    assert.ok(size > 20 * MiB, `message is only ${size} bytes`);
    const growth = peak - baseline;
    assert.ok(growth < size / 2, `rss grew by ${growth} bytes while scanning ${size} bytes`);
  });

  test('result() rejects when the scanner is destroyed before the input ends', async () => {
    const scanner = new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS);
    scanner.write('Subject: x\r\n');
    scanner.destroy();
    await assert.rejects(scanner.result(), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });
});

describe('AttachmentScanner finds uuencoded files', () => {
  const uu = (name: string, begin = 'begin 644') => `${begin} ${name}\r\nM5%H\`\r\n\`\r\nend\r\n`;
  const text = (body: string, ...headers: string[]) =>
    [...(headers.length ? headers : ['Content-Type: text/plain; charset=us-ascii']), '', body].join('\r\n');

  test('in a text/plain part', async () => {
    const message = multipart(textPart, text(`Here it is:\r\n\r\n${uu('evil.exe')}`));
    assert.deepEqual(await scanBothWays(message), blocked('evil.exe'));
  });

  test('in a message without MIME', async () => {
    const message = `From: a@example.com\r\nSubject: x\r\n\r\n${uu('Evil.SCR', 'begin 0755')}`;
    assert.deepEqual(await scanBothWays(message), blocked('Evil.SCR', 'scr'));
  });

  test('written by uuencode -m (begin-base64)', async () => {
    const message = `Subject: x\r\n\r\nhi\r\n${uu('setup.msi', 'begin-base64 644')}`;
    assert.deepEqual(await scanBothWays(message), blocked('setup.msi', 'msi'));
  });

  test('in a base64 or quoted-printable text part (read decoded)', async () => {
    const base64 = Buffer.from(`see below\r\n${uu('evil.exe')}`).toString('base64');
    const b64 = multipart(text(base64, 'Content-Type: text/plain', 'Content-Transfer-Encoding: base64'));
    assert.deepEqual(await scanBothWays(b64), blocked('evil.exe'));
    const qp = multipart(
      text(
        'see=20below\r\nbegin 644 ev=\r\nil.exe\r\nend',
        'Content-Type: text/plain',
        'Content-Transfer-Encoding: quoted-printable',
      ),
    );
    assert.deepEqual(await scanBothWays(qp), blocked('evil.exe'));
  });

  test('in an x-uuencode part, by type or by transfer encoding', async () => {
    const byType = multipart(text(uu('evil.bat'), 'Content-Type: application/x-uuencode; name="data.uue"'));
    assert.deepEqual(await scanBothWays(byType), blocked('evil.bat', 'bat'));
    const byEncoding = multipart(
      text(
        uu('evil.bat'),
        'Content-Type: application/octet-stream; name="data"',
        'Content-Transfer-Encoding: x-uuencode',
      ),
    );
    assert.deepEqual(await scanBothWays(byEncoding), blocked('evil.bat', 'bat'));
  });

  test('with an NTFS stream suffix', async () => {
    const message = `Subject: x\r\n\r\n${uu('evil.exe::$DATA')}`;
    assert.deepEqual(await scanBothWays(message), blocked('evil.exe::$DATA'));
  });

  test('not: a harmless name, "begin" inside a line, or no mode', async () => {
    const message = multipart(
      text(`${uu('report.pdf')}we begin 644 evil.exe today\r\nbegin here evil.exe\r\n`),
      attachment('Content-Disposition: attachment; filename="data.bin"'),
    );
    assert.deepEqual(await scanBothWays(message), CLEAN);
  });
});

describe('AttachmentScanner reads NTFS stream suffixes', () => {
  for (const name of ['evil.exe::$DATA', 'evil.exe:', 'evil.exe:stream', 'evil.exe:stream:$DATA']) {
    test(name, async () => {
      const message = multipart(textPart, attachment(`Content-Disposition: attachment; filename="${name}"`));
      assert.deepEqual(await scanBothWays(message), blocked(name));
    });
  }
});

describe('base64 with a stray "=" early on', () => {
  // A "=" before the end of a base64 body made the base64 decoder that mailsplit bundled
  // (libbase64 1.3.0) return nothing for a body that came in one write: the zip and the
  // .exe inside it went unseen. Lenient decoders at the recipient skip the "=" and open it.
  test('a zip holding an .exe is refused however the message is written', async () => {
    const archive = zip([{ name: 'setup.exe', data: 'MZ' }]).toString('base64');
    const message = [
      'Content-Type: application/zip; name="docs.zip"',
      'Content-Transfer-Encoding: base64',
      '',
      `p=${archive}`,
      '',
    ].join('\r\n');
    assert.deepEqual(await scanBothWays(message), blocked('docs.zip/setup.exe'));
  });

  test('the input the fuzzer found gives one answer whole and in pieces', async () => {
    const found = await readFile(
      new URL('../../../fuzz/regressions/attachment-scan-chunking/base64-padding-mid-write', import.meta.url),
    );
    const whole = await scan(found);
    for (const size of [3, 64, 400]) assert.deepEqual(await scan(found, size), whole, `${size}-byte writes`);
  });
});

describe('a message that is one plain text part (read without mailsplit)', () => {
  /** A seeded generator of headers near the line between plain text and MIME, and bodies with uuencoded files. */
  function generated(seed: number): Buffer {
    let x = seed;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return Math.floor((x / 2 ** 31) * n); // the high bits: an LCG's low bits repeat quickly
    };
    const pick = <T>(items: readonly T[]): T => items[rnd(items.length)] as T;
    const eol = rnd(5) === 0 ? '\n' : '\r\n';
    const types = [
      undefined,
      undefined,
      'Content-Type: text/plain',
      'Content-Type: text/plain',
      'Content-Type: text/plain; charset=utf-8',
      'content-type:TEXT/HTML ; charset="us-ascii"',
      'Content-Type: text/plain; name="notes.exe"',
      'Content-Type: text/plain;\r\n\tcharset=utf-8',
      'Content-Type: =?utf-8?q?text/plain?=',
      'Content-Type: application/x-msdownload',
      'Content-Type: application/octet-stream; name="run.exe"',
      'Content-Type: message/rfc822',
      'Content-Type: text/x-uuencode',
      'Content-Type: multipart/mixed; boundary="b"',
      'Content-Type: text/plain; boundary="b"',
      'Content-Type: text/plain; charset=us-ascii; boundary=b',
      'Content-Type: text/plain; format=flowed; delsp=yes',
      'Content-Type:',
    ];
    const encodings = [
      undefined,
      undefined,
      undefined,
      'Content-Transfer-Encoding: 7bit',
      'Content-Transfer-Encoding: 8BIT',
      'Content-Transfer-Encoding: 7bit (plain)',
      'Content-Transfer-Encoding: base64',
      'Content-Transfer-Encoding: quoted-printable',
      'Content-Transfer-Encoding: x-uuencode',
    ];
    const dispositions = [
      undefined,
      undefined,
      undefined,
      undefined,
      'Content-Disposition: inline',
      'Content-Disposition: INLINE ',
      'Content-Disposition: inline; filename="notes.exe"',
      'Content-Disposition: attachment; filename="setup.exe"',
      'Content-Disposition: attachment',
    ];
    const lines = ['From: a@example.com', `Subject: s${seed}`];
    if (rnd(12) === 0) lines.unshift(`From a@example.com Mon Jan  1 00:00:00 2026`);
    for (const field of [pick(types), pick(encodings), pick(dispositions)]) {
      if (field !== undefined) lines.splice(1 + rnd(lines.length), 0, field);
    }
    if (rnd(8) === 0) lines.push(pick(types) ?? 'Content-Type: text/plain');
    const names = ['evil.exe', 'notes.txt', 'a.exe . ', 'x.scr', 'clean.pdf'];
    const body: string[] = [];
    for (let i = rnd(6); i > 0; i--) {
      body.push(
        pick([
          'Hello,',
          '',
          `begin 644 ${pick(names)}`,
          `begin-base64 600 ${pick(names)}`,
          'M4$%30T%,24X@4D5!1$U%',
          '`',
          'end',
          ' begin 644 indented.exe',
          'beginning of a line',
          `YmVnaW4gNjQ0IGV2aWwuZXhl`,
          '--b',
          '--b\r\nContent-Type: application/octet-stream; name="run.exe"\r\n\r\nTVo=\r\n--b--',
        ]),
      );
    }
    const headerOnly = rnd(15) === 0;
    const text = lines.join(eol) + (headerOnly ? '' : `${eol}${eol}${body.join(eol)}${rnd(2) ? eol : ''}`);
    return Buffer.from(text.replaceAll('\r\n', eol), 'latin1');
  }

  test('gives what mailsplit gives, for 3,000 generated messages written whole and in random pieces', async () => {
    let plain = 0;
    let plainBlocked = 0;
    let blockedSeen = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const message = generated(seed);
      const size = seed % 2 ? Number.POSITIVE_INFINITY : 1 + (seed % 7 === 0 ? 1 : (seed * 7919) % 200);
      const results: ScanResult[] = [];
      for (const plainText of [true, false]) {
        results.push(await scan(message, size, DEFAULT_BLOCKED_EXTENSIONS, plainText));
      }
      assert.deepEqual(results[0], results[1], `seed ${seed}: ${JSON.stringify(message.toString('latin1'))}`);
      const end = headerEnd(message);
      const isPlain = end !== -1 && isPlainText(message.subarray(0, end), DEFAULT_MIME_LIMITS);
      if (isPlain) plain++;
      if (isPlain && results[0]?.kind === 'blocked') plainBlocked++;
      if (!isPlain && results[0]?.kind === 'blocked') blockedSeen++;
    }
    // both paths are well represented, and files are found on both
    assert.ok(plain > 150 && plain < 2850, `${plain} of 3,000 read as plain text`);
    assert.ok(plainBlocked > 30, `${plainBlocked} blocked among the plain text ones`);
    assert.ok(blockedSeen > 300, `${blockedSeen} blocked among the others`);
  });

  test('splits a text/plain part with a boundary parameter at it, as mailsplit does (found by the fuzzer)', async () => {
    const message = [
      'From: a@example.com',
      'Content-Type: text/plain; charset=utf-8; boundary="b"',
      '',
      'hi',
      '--b',
      'Content-Type: application/octet-stream; name=invoice.exe',
      'Content-Transfer-Encoding: base64',
      '',
      'TVo=',
      '--b--',
      '',
    ].join('\r\n');
    assert.deepEqual(await scanBothWays(message), blocked('invoice.exe'));
  });

  test('finds a uuencoded .exe in a plain text body, across pieces, and passes a clean one', async () => {
    const message =
      'From: a@example.com\r\nContent-Type: text/plain\r\n\r\nHi\r\nbegin 644 evil.exe\r\nM\r\n`\r\nend\r\n';
    assert.deepEqual(await scanBothWays(message), blocked('evil.exe'));
    assert.deepEqual(await scanBothWays(message.replace('evil.exe', 'notes.txt')), CLEAN);
  });

  test('says which headers are plain text, and finds the end of a header that comes in pieces', () => {
    const header = (...fields: string[]) =>
      Buffer.from(`${['From: a@example.com', ...fields].join('\r\n')}\r\n\r\n`);
    const limits = DEFAULT_MIME_LIMITS;
    assert.equal(isPlainText(header(), limits), true);
    assert.equal(isPlainText(header('Content-Type: text/plain; charset=utf-8'), limits), true);
    assert.equal(isPlainText(header('Content-Transfer-Encoding: 8bit'), limits), true);
    for (const field of [
      'Content-Type: text/plain; name="a.exe"',
      'Content-Type: text/plain; boundary="b"',
      'Content-Type: text/plain; charset=nt-Type: multipart/mixed',
      `Content-Type: text/plain;${' '.repeat(100_000)}x`,
      'Content-Type: application/pdf',
      'Content-Type: text/plain;\r\n charset=utf-8',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: inline; filename="a.exe"',
      'Content-Disposition: attachment',
    ]) {
      assert.equal(isPlainText(header(field), limits), false, field);
    }
    assert.equal(isPlainText(header('Content-Disposition: inline'), limits), true);
    assert.equal(
      isPlainText(header('Content-Disposition: inline', 'Content-Disposition: inline'), limits),
      false,
    );
    assert.equal(isPlainText(header('Content-Type: text/plain', 'Content-Type: text/html'), limits), false);
    assert.equal(isPlainText(header('X: y'), { ...limits, maxHeaderLines: 1 }), false, 'over a MIME limit');
    const bytes = Buffer.from('A: b\r\nC: d\r\n\r\nbody');
    assert.equal(headerEnd(bytes), 14);
    assert.equal(headerEnd(Buffer.from('\r\nbody')), 2);
    assert.equal(headerEnd(Buffer.from('A: b\nC: d\n\nbody')), 11);
    assert.equal(headerEnd(Buffer.from('A: b\r\n')), -1);
  });
});
