// The zip file-name reader (relay/src/mime/zip-scan.ts) on any decoded attachment bytes.
// Checks: it finishes with one of its three answers, a blocked answer names a file in the
// archive with a blocked extension, and the answer does not depend on how the bytes were
// split into writes (whole, three pieces, one byte at a time).
import { DEFAULT_BLOCKED_EXTENSIONS } from '../../relay/src/config/schema.ts';
import type { ScanResult } from '../../relay/src/mime/attachment-scan.ts';
import { normaliseExtensions } from '../../relay/src/mime/filename.ts';
import { ZipScan } from '../../relay/src/mime/zip-scan.ts';
import type { FuzzTarget } from '../engine/fuzz-loop.ts';
import type { SliceProbe } from '../engine/slice-probe.ts';
import { check, checkSame, pieces } from './check.ts';

const BLOCKED = normaliseExtensions(DEFAULT_BLOCKED_EXTENSIONS);
const BYTEWISE_UP_TO = 2048;

/** Writes the chunks and ends; the probe times it all as one slice (an upper bound on each). */
async function scan(chunks: readonly Buffer[], probe: SliceProbe | null): Promise<ScanResult> {
  const scanner = new ZipScan('a.zip', BLOCKED);
  const done = scanner.result();
  const feed = (): void => {
    for (const chunk of chunks) scanner.write(chunk);
    scanner.end();
  };
  if (probe === null) feed();
  else await probe.slice(feed);
  const result = await done;
  if (result.kind === 'blocked') {
    check(result.filename.startsWith('a.zip/'), `blocked name outside the archive: ${result.filename}`);
    check(BLOCKED.has(result.extension), `blocked for an extension not on the list: ${result.extension}`);
  } else {
    check(result.kind === 'clean' || result.kind === 'malformed', `answer ${JSON.stringify(result)}`);
  }
  return result;
}

export const target: FuzzTarget = {
  name: 'zip-scan',
  maxLength: 8192,
  dictionary: [
    Buffer.from('PK\x03\x04', 'latin1'),
    Buffer.from('PK\x01\x02', 'latin1'),
    Buffer.from('PK\x05\x06', 'latin1'),
    Buffer.from('PK\x06\x06', 'latin1'),
    Buffer.from('PK\x06\x07', 'latin1'),
    Buffer.from('PK\x07\x08', 'latin1'),
    Buffer.from([0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0x08, 0x08]),
    Buffer.from([0x00, 0x08]),
    '.exe',
    '.EXE.',
    '.js',
    'dir/',
    '\0.pdf',
  ],
  async run(input, probe) {
    const whole = await scan([input], probe);
    checkSame(whole, await scan(pieces(input, 3), probe), 'whole and in three pieces');
    if (input.length <= BYTEWISE_UP_TO) {
      const bytes = [...input].map((b) => Buffer.from([b]));
      // thousands of writes in one slice would measure the harness, not the scanner
      checkSame(whole, await scan(bytes, null), 'whole and one byte at a time');
    }
  },
};
