import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { verifyPassword } from '../auth/password.ts';
import { runHashPassword } from './hash-password.ts';

type Run = { code: number; stdout: string; stderr: string };

async function run(args: string[], input: string | undefined, stdin = new PassThrough()): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
  });
  stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  if (input !== undefined) stdin.end(input);
  const code = await runHashPassword(args, { stdin, stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('hash-password', () => {
  it('hashes one line from stdin with scrypt and does not echo it', async () => {
    const result = await run([], 'correct horse battery\n');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\$scrypt\$ln=15,r=8,p=1\$[^\n]+\n$/);
    assert.equal(await verifyPassword('correct horse battery', result.stdout.trimEnd()), true);
    assert.ok(!result.stdout.includes('horse') && !result.stderr.includes('horse'));
  });

  it('uses argon2id when asked, reads only the first line and strips CRLF', async () => {
    const result = await run(['--scheme', 'argon2id'], 'first line\r\nsecond line\n');
    assert.equal(result.code, 0);
    const stored = result.stdout.trimEnd();
    assert.match(stored, /^\$argon2id\$v=19\$/);
    assert.equal(await verifyPassword('first line', stored), true);
  });

  it('accepts input without a trailing newline, keeping inner and trailing spaces', async () => {
    const result = await run(['--scheme=argon2id'], '  spaced out  ');
    assert.equal(result.code, 0);
    assert.equal(await verifyPassword('  spaced out  ', result.stdout.trimEnd()), true);
  });

  it('reads a line that arrives in several chunks', async () => {
    const stdin = new PassThrough();
    const pending = run(['--scheme', 'argon2id'], undefined, stdin);
    stdin.write('pä');
    stdin.write(Buffer.from('ß', 'utf8').subarray(0, 1)); // a character split across chunks
    stdin.write(Buffer.from('ß', 'utf8').subarray(1));
    stdin.write('word\nrest');
    const result = await pending;
    assert.equal(result.code, 0);
    assert.equal(await verifyPassword('päßword', result.stdout.trimEnd()), true);
  });

  it('refuses an empty password with exit code 2', async () => {
    for (const input of ['\n', '', '\r\n']) {
      const result = await run([], input);
      assert.equal(result.code, 2, JSON.stringify(input));
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /password is empty/);
    }
  });

  it('refuses an absurdly long line', async () => {
    const result = await run(['--scheme', 'argon2id'], `${'x'.repeat(5000)}\n`);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /longer than 4096 bytes/);
    assert.equal(result.stdout, '');
  });

  it('prints help with --help and -h', async () => {
    for (const flag of ['--help', '-h']) {
      const result = await run([flag], undefined);
      assert.equal(result.code, 0);
      assert.match(result.stdout, /^Usage: sluice-relay hash-password/);
    }
  });

  it('rejects unknown schemes and options with exit code 2', async () => {
    for (const args of [['--scheme', 'md5'], ['--scheme', 'bcrypt'], ['--bogus'], ['extra'], ['--scheme']]) {
      const result = await run(args, 'pw\n');
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /^hash-password: .+\n\nUsage:/, args.join(' '));
      assert.equal(result.stdout, '');
    }
  });

  // No pseudo-terminal can be opened here, so this stands in for one: a stream with the
  // isTTY flag and setRawMode() that tty.ReadStream has. It checks echo is turned off
  // around the read and that the line editing keys work.
  it('at a terminal, prompts on stderr with echo off', async () => {
    const tty = Object.assign(new PassThrough(), {
      isTTY: true as const,
      rawModes: [] as boolean[],
      setRawMode(raw: boolean) {
        tty.rawModes.push(raw);
        return tty;
      },
    });
    const pending = run(['--scheme', 'argon2id'], undefined, tty);
    tty.write('secrex');
    tty.write('\u007ft');
    tty.write('\r');
    const result = await pending;
    assert.equal(result.code, 0);
    assert.deepEqual(tty.rawModes, [true, false]);
    assert.equal(result.stderr, 'Password: \n');
    assert.equal(await verifyPassword('secret', result.stdout.trimEnd()), true);

    const cancelled = Object.assign(new PassThrough(), { isTTY: true as const, setRawMode: () => undefined });
    const pendingCancel = run([], undefined, cancelled);
    cancelled.write('abc\u0003');
    const cancelResult = await pendingCancel;
    assert.equal(cancelResult.code, 130);
    assert.equal(cancelResult.stdout, '');
  });
});
