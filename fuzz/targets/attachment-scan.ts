// The attachment scanner (relay/src/mime/attachment-scan.ts: mailsplit's splitter, file
// names decoded per RFC 2047/2231, nested messages, zip archives) on any message body a
// client could send after DATA. Checks: it finishes with one of its three answers, a
// blocked answer names a blocked extension, a writer is never left waiting (no hang).
// attachment-scan-chunking adds: the answer does not depend on how the bytes were split
// into writes (whole, three pieces, small pieces; never ending in CR, as in the relay).
// It is a target of its own because its three scans per input make it a third as fast.
// attachment-scan-plain-text: a message the scanner reads as one plain text part, without
// mailsplit (relay/src/mime/plain-text.ts), gets the answer mailsplit's way gives.
import { once } from 'node:events';
import { DEFAULT_BLOCKED_EXTENSIONS } from '../../relay/src/config/schema.ts';
import { AttachmentScanner, type ScanResult } from '../../relay/src/mime/attachment-scan.ts';
import { normaliseExtensions } from '../../relay/src/mime/filename.ts';
import type { FuzzTarget } from '../engine/fuzz-loop.ts';
import type { SliceProbe } from '../engine/slice-probe.ts';
import { check, checkSame } from './check.ts';

const BLOCKED = normaliseExtensions(DEFAULT_BLOCKED_EXTENSIONS);
const SMALL_PIECES_UP_TO = 4096;

/** Writes the chunks as a stream would (waiting for drain), each write one timed slice. */
async function scan(chunks: readonly Buffer[], probe: SliceProbe, plainText = true): Promise<ScanResult> {
  const scanner = new AttachmentScanner(DEFAULT_BLOCKED_EXTENSIONS, { plainText });
  for (const chunk of chunks) {
    if (!(await probe.slice(() => scanner.write(chunk)))) await once(scanner, 'drain');
  }
  await probe.slice(() => scanner.end());
  const result = await scanner.result();
  if (result.kind === 'blocked') {
    check(BLOCKED.has(result.extension), `blocked for an extension not on the list: ${result.extension}`);
    check(result.filename.length > 0, 'blocked without a file name');
  } else {
    check(result.kind === 'clean' || result.kind === 'malformed', `answer ${JSON.stringify(result)}`);
  }
  return result;
}

/**
 * The input in pieces of `size` bytes, none ending in CR: the relay's DATA path writes
 * nothing else (LineEndingNormaliser holds a chunk's last CR back until it sees the next byte).
 */
function fixedPieces(input: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < input.length; ) {
    let end = Math.min(input.length, at + size);
    while (end < input.length && input[end - 1] === 0x0d) end++;
    out.push(input.subarray(at, end));
    at = end;
  }
  return out;
}

/** Like pieces(), with each cut moved past a CR. */
function piecesNoCr(input: Buffer, count: number): Buffer[] {
  return fixedPieces(input, Math.max(1, Math.ceil(input.length / count)));
}

const DICTIONARY = [
  '\r\n',
  '\r\n\r\n',
  '--',
  'Content-Type: ',
  'multipart/mixed; boundary=',
  'message/rfc822',
  'message/global',
  'application/zip',
  'Content-Disposition: attachment; ',
  'filename=',
  'filename*=',
  'filename*0*=',
  'filename*1=',
  'name=',
  "utf-8''",
  '=?UTF-8?B?',
  '=?ISO-8859-1?Q?',
  '?=',
  'Content-Transfer-Encoding: base64',
  'Content-Transfer-Encoding: quoted-printable',
  '.exe',
  '.exe.',
  '%2Eexe',
  'begin 644 ',
  'UEsDBA',
  '\r\n\t',
  'Content-Type: text/plain',
  'Content-Transfer-Encoding: 7bit',
];

export const target: FuzzTarget = {
  name: 'attachment-scan',
  maxLength: 16 * 1024,
  dictionary: DICTIONARY,
  async run(input, probe) {
    await scan([input], probe);
    await scan(piecesNoCr(input, 3), probe);
  },
};

export const chunkingTarget: FuzzTarget = {
  name: 'attachment-scan-chunking',
  corpus: 'attachment-scan',
  maxLength: 16 * 1024,
  dictionary: DICTIONARY,
  async run(input, probe) {
    const whole = await scan([input], probe);
    checkSame(whole, await scan(piecesNoCr(input, 3), probe), 'whole and in three pieces');
    if (input.length <= SMALL_PIECES_UP_TO) {
      // one small size per input (2 to 14 bytes), so the fuzzer varies it with the input
      const size = 2 + (input.length % 13);
      checkSame(whole, await scan(fixedPieces(input, size), probe), `whole and in pieces of ${size} bytes`);
    }
  },
};

export const plainTextTarget: FuzzTarget = {
  name: 'attachment-scan-plain-text',
  corpus: 'attachment-scan',
  maxLength: 16 * 1024,
  dictionary: DICTIONARY,
  async run(input, probe) {
    // like with like: how mailsplit's answer depends on the pieces is attachment-scan-chunking's
    for (const [pieces, how] of [
      [[input], 'whole'],
      [piecesNoCr(input, 3), 'in three pieces'],
    ] as const) {
      const byMailsplit = await scan(pieces, probe, false);
      checkSame(byMailsplit, await scan(pieces, probe), `${how}, read by mailsplit and as plain text`);
    }
  },
};
