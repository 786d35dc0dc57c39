import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { type ZipEntry as Entry, zip } from '../testing/zip.ts';
import { normaliseExtensions } from './filename.ts';
import { ZipScan } from './zip-scan.ts';

const BLOCKED = normaliseExtensions(['exe', 'scr', 'js']);

/** Scans the bytes written in pieces of at most `piece` bytes. */
async function scan(bytes: Buffer, piece = bytes.length || 1): Promise<unknown> {
  const scanner = new ZipScan('docs.zip', BLOCKED);
  for (let at = 0; at < bytes.length; at += piece) scanner.write(bytes.subarray(at, at + piece));
  scanner.end();
  return scanner.result();
}

const BLOCKED_EXE = { kind: 'blocked', filename: 'docs.zip/invoice.exe', extension: 'exe' };

describe('ZipScan', () => {
  it('finds a blocked name among stored and deflated entries, however the bytes arrive', async () => {
    const archive = zip([
      { name: 'readme.txt', data: 'hello '.repeat(500), deflate: true },
      { name: 'invoice.exe', data: 'MZ\x90\x00' },
      { name: 'notes.txt', data: 'x' },
    ]);
    for (const piece of [archive.length, 1, 7, 64, 1000]) {
      assert.deepEqual(await scan(archive, piece), BLOCKED_EXE, `pieces of ${piece}`);
    }
  });

  it('passes an archive of harmless files, and data that is no archive at all', async () => {
    const archive = zip([
      { name: 'report.pdf', data: '%PDF-1.7', deflate: true },
      { name: 'photos/', data: '' },
      { name: 'photos/beach.jpg', data: 'JFIF' },
      { name: 'exe.txt', data: 'an .exe in the text is no file' },
    ]);
    assert.deepEqual(await scan(archive, 13), { kind: 'clean' });
    assert.deepEqual(await scan(Buffer.from('this is no zip archive\r\n'.repeat(100))), { kind: 'clean' });
  });

  it('reads the directory for entries whose sizes come after their data, and names in folders', async () => {
    const archive = zip([
      { name: 'readme.txt', data: 'read me', deflate: true, descriptor: true },
      { name: 'payload/Run.SCR', data: 'x', descriptor: true },
    ]);
    assert.deepEqual(await scan(archive, 5), {
      kind: 'blocked',
      filename: 'docs.zip/payload/Run.SCR',
      extension: 'scr',
    });
  });

  it('reads the local headers of an archive whose directory is missing', async () => {
    const archive = zip(
      [
        { name: 'a.txt', data: 'a' },
        { name: 'invoice.exe', data: 'MZ' },
      ],
      {
        withoutDirectory: true,
      },
    );
    assert.deepEqual(await scan(archive, 3), BLOCKED_EXE);
  });

  it('reads every name of a directory larger than 1 MiB', async () => {
    const name = (i: number) => `${String(i).padStart(6, '0')}-${'n'.repeat(200)}.txt`;
    const entries = Array.from({ length: 6000 }, (_, i): Entry => ({ name: name(i), descriptor: true }));
    entries.push({ name: 'invoice.exe', descriptor: true });
    assert.deepEqual(await scan(zip(entries), 65536), BLOCKED_EXE);
  });

  // Archives whose directory and local headers disagree: each tool believes one of them.
  const decoy: Entry = { name: 'a.txt', data: 'a', descriptor: true };
  const locals = (entries: Entry[]) => zip(entries, { withoutDirectory: true });
  /** The central directory and end record of an archive of these entries. */
  const directoryOf = (entries: Entry[]) => zip(entries).subarray(locals(entries).length);

  it('reads the local headers when the directory leaves an entry out', async () => {
    const archive = Buffer.concat([
      locals([decoy, { name: 'invoice.exe', data: 'MZ' }]),
      directoryOf([decoy]),
    ]);
    for (const piece of [archive.length, 1, 5]) assert.deepEqual(await scan(archive, piece), BLOCKED_EXE);
  });

  it('reads the directory when the end record points elsewhere', async () => {
    const archive = zip([decoy, { name: 'invoice.exe', data: 'MZ', descriptor: true }]);
    archive.writeUInt32LE(0, archive.length - 22 + 12); // directory size
    archive.writeUInt32LE(0, archive.length - 22 + 16); // directory offset
    assert.deepEqual(await scan(archive, 7), BLOCKED_EXE);
  });

  it('reads the local headers after junk, with no directory or end record', async () => {
    const archive = Buffer.concat([
      Buffer.from('MZ self-extractor stub '.repeat(50)),
      locals([decoy, { name: 'invoice.exe' }]),
    ]);
    assert.deepEqual(await scan(archive, 11), BLOCKED_EXE);
  });

  it('reads the Unicode Path extra field, which tools prefer to the header name', async () => {
    const unicode = Buffer.from('invoice.exe');
    const extra = Buffer.alloc(9);
    extra.writeUInt16LE(0x7075, 0);
    extra.writeUInt16LE(5 + unicode.length, 2);
    extra.writeUInt8(1, 4);
    const name = Buffer.from('a.txt');
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(name.length, 26);
    header.writeUInt16LE(extra.length + unicode.length, 28);
    assert.deepEqual(await scan(Buffer.concat([header, name, extra, unicode]), 3), BLOCKED_EXE);
  });

  it('refuses headers that overlap rather than read each (work beyond the input)', async () => {
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(0xffff, 26);
    const result = (await scan(Buffer.concat(Array(4000).fill(header)), 4096)) as {
      kind: string;
      detail?: string;
    };
    assert.deepEqual(result, { kind: 'malformed', detail: 'the headers of docs.zip overlap' });
  });

  it('copies the input a bounded number of times, however small the pieces', async () => {
    const entries = Array.from(
      { length: 200 },
      (_, i): Entry => ({ name: `${i}-${'n'.repeat(100)}.txt`, data: 'x' }),
    );
    const archive = zip([...entries, { name: 'invoice.exe' }]);
    const concat = Buffer.concat;
    let copied = 0;
    const spy = mock.method(Buffer, 'concat', (list: readonly Uint8Array[], length?: number) => {
      const joined = concat(list, length);
      copied += joined.length;
      return joined;
    });
    try {
      assert.deepEqual(await scan(archive, 1), BLOCKED_EXE);
    } finally {
      spy.mock.restore();
    }
    assert.ok(copied <= 3 * archive.length, `${copied} bytes copied for a ${archive.length}-byte archive`);
  });

  it('never fails on arbitrary bytes, signatures included, split anywhere', async () => {
    const signatures = [0x04034b50, 0x02014b50, 0x06054b50, 0x06064b50, 0x07064b50];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 200; round++) {
      const bytes = Buffer.alloc(Math.floor(random() * 4000));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
      for (let k = 0; k < 6 && bytes.length >= 4; k++) {
        const at = Math.floor(random() * (bytes.length - 3));
        bytes.writeUInt32LE(signatures[Math.floor(random() * signatures.length)] ?? 0, at);
      }
      const result = (await scan(bytes, 1 + Math.floor(random() * 300))) as { kind: string };
      assert.ok(['clean', 'blocked', 'malformed'].includes(result.kind));
    }
  });
});
