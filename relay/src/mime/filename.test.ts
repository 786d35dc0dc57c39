import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blockedExtension, headerFileNames, normaliseExtensions } from './filename.ts';

const BLOCKED: ReadonlySet<string> = new Set(['exe', 'bat', 'js']);

describe('blockedExtension', () => {
  const cases: [string, string | null][] = [
    ['evil.exe', 'exe'],
    ['EVIL.EXE', 'exe'],
    ['Evil.Bat', 'bat'],
    ['evil.exe.', 'exe'],
    ['evil.exe  ', 'exe'],
    ['evil.exe . ', 'exe'],
    ['C:\\temp\\evil.exe', 'exe'],
    ['dir/evil.exe', 'exe'],
    ['../../evil.js', 'js'],
    ['evil.exe\0.pdf', 'exe'],
    ['.exe', 'exe'],
    ['report.pdf', null],
    ['exe', null],
    ['evil.exe.pdf', null],
    ['evil.exe/', null],
    ['evil.', null],
    ['', null],
    ['archive.tar.gz', null],
    // NTFS alternate data streams: each of these writes evil.exe
    ['evil.exe::$DATA', 'exe'],
    ['evil.exe:', 'exe'],
    ['evil.exe:stream', 'exe'],
    ['evil.exe:stream:$DATA', 'exe'],
    ['EVIL.EXE. :Zone.Identifier:$DATA', 'exe'],
    ['C:evil.exe', 'exe'],
    ['dir\\evil.exe::$DATA', 'exe'],
    ['report.pdf::$DATA', null],
    ['report.pdf:notes.txt', null],
  ];
  for (const [filename, expected] of cases) {
    test(`${JSON.stringify(filename)} → ${expected}`, () => {
      assert.equal(blockedExtension(filename, BLOCKED), expected);
    });
  }
});

test('normaliseExtensions lower-cases, trims and drops leading dots and blanks', () => {
  assert.deepEqual(normaliseExtensions(['.EXE', ' Bat ', '', 'js', 'JS']), new Set(['exe', 'bat', 'js']));
});

describe('headerFileNames', () => {
  const reads = (header: string, name: string): void => {
    assert.ok(
      headerFileNames(header).includes(name),
      `${JSON.stringify(headerFileNames(header))} lacks ${name}`,
    );
  };

  test('plain quoted and unquoted values of filename and name', () => {
    reads('attachment; filename="evil.exe"', 'evil.exe');
    reads('application/octet-stream; name=evil.exe', 'evil.exe');
  });

  test('RFC 2047 encoded words, B and Q', () => {
    reads('attachment; filename="=?UTF-8?B?ZXZpbC5leGU=?="', 'evil.exe');
    reads('application/octet-stream; name="=?iso-8859-1?Q?=E9vil.exe?="', 'évil.exe');
  });

  test('RFC 2231 continuations and charsets', () => {
    reads("attachment; filename*0*=utf-8''ev; filename*1*=il.exe", 'evil.exe');
    reads("attachment; filename*=UTF-8''%E2%82%AC.exe", '€.exe');
    reads('attachment; filename*0="ev"; filename*1="il.exe"', 'evil.exe');
  });

  test('every duplicate, not only the one libmime keeps', () => {
    reads('attachment; filename="safe.pdf"; filename="evil.exe"', 'evil.exe');
    reads('attachment; filename="evil.exe"; filename*=utf-8\'\'safe.pdf', 'evil.exe');
    reads("attachment; filename*=utf-8''safe.pdf; filename*=utf-8''evil.exe", 'evil.exe');
  });

  test('backslashes both as escapes and literally', () => {
    reads('attachment; filename="C:\\\\temp\\\\evil.exe"', 'C:\\temp\\evil.exe');
    reads('attachment; filename=evil.ex\\e', 'evil.exe');
    reads('attachment; filename=evil.ex\\e', 'evil.ex\\e');
  });

  test('a semicolon inside quotes does not split the value', () => {
    assert.deepEqual(headerFileNames('attachment; filename="a;b.pdf"'), ['a;b.pdf']);
  });

  test('no file name at all', () => {
    assert.deepEqual(headerFileNames('text/plain; charset=utf-8'), []);
    assert.deepEqual(headerFileNames('inline'), []);
    assert.deepEqual(headerFileNames(''), []);
  });
});
