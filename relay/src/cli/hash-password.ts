// `sluice-relay hash-password`: reads one password from stdin and prints the hash to put in
// the users file. The password never appears on the command line (it would land in shell
// history and `ps`) and is never echoed.
import { StringDecoder } from 'node:string_decoder';
import { parseArgs } from 'node:util';
import { type HashScheme, hashPassword } from '../auth/password.ts';
import { isSluiceError } from '../errors.ts';

export type HashPasswordIo = {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
};

export const HASH_PASSWORD_USAGE = `Usage: sluice-relay hash-password [--scheme scrypt|argon2id]

Reads one password line from stdin and prints its hash for the users file.

  --scheme <name>  scrypt (default) or argon2id
  -h, --help       show this help

Example:
  printf '%s\\n' "$PASSWORD" | sluice-relay hash-password --scheme argon2id
`;

const SCHEMES: readonly HashScheme[] = ['scrypt', 'argon2id'];
// Far above any real password; stops a stray pipe without newlines from being read forever.
const MAX_PASSWORD_BYTES = 4096;

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_CANCELLED = 130;

/** Runs the command; resolves to the process exit code. */
export async function runHashPassword(args: string[], io: HashPasswordIo): Promise<number> {
  let scheme: HashScheme = 'scrypt';
  try {
    const { values } = parseArgs({
      args,
      options: { scheme: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      io.stdout.write(HASH_PASSWORD_USAGE);
      return EXIT_OK;
    }
    if (values.scheme !== undefined) {
      const wanted = SCHEMES.find((s) => s === values.scheme);
      if (wanted === undefined) return usageError(io, `unknown scheme "${values.scheme}"`);
      scheme = wanted;
    }
  } catch (err: unknown) {
    // parseArgs throws a TypeError for unknown options and missing values.
    if (err instanceof TypeError) return usageError(io, err.message);
    throw err;
  }

  let password: string | undefined;
  try {
    password = isTty(io.stdin) ? await readHidden(io.stdin, io.stderr) : await readLine(io.stdin);
  } catch (err: unknown) {
    io.stderr.write(
      `hash-password: cannot read the password: ${err instanceof Error ? err.message : 'error'}\n`,
    );
    return EXIT_USAGE;
  }
  if (password === undefined) {
    io.stderr.write('hash-password: cancelled\n');
    return EXIT_CANCELLED;
  }
  if (password === '') {
    io.stderr.write('hash-password: the password is empty (write it to stdin, followed by a newline)\n');
    return EXIT_USAGE;
  }

  try {
    const hash = await hashPassword(password, { scheme });
    await write(io.stdout, `${hash}\n`);
    return EXIT_OK;
  } catch (err: unknown) {
    if (!isSluiceError(err)) throw err;
    io.stderr.write(`hash-password: ${err.message}\n`);
    return EXIT_ERROR;
  }
}

function usageError(io: HashPasswordIo, message: string): number {
  io.stderr.write(`hash-password: ${message}\n\n${HASH_PASSWORD_USAGE}`);
  return EXIT_USAGE;
}

/** Reads up to the first newline (or the end of input) and strips that newline. */
function readLine(stdin: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = (err?: Error): void => {
      stdin.removeListener('data', onData);
      stdin.removeListener('end', onEnd);
      stdin.removeListener('error', onError);
      stdin.pause();
      if (err !== undefined) {
        reject(err);
        return;
      }
      const line = Buffer.concat(chunks).toString('utf8');
      resolve(line.endsWith('\r') ? line.slice(0, -1) : line);
    };
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      const newline = bytes.indexOf(0x0a);
      const part = newline === -1 ? bytes : bytes.subarray(0, newline);
      chunks.push(part);
      length += part.length;
      if (length > MAX_PASSWORD_BYTES)
        finish(new Error(`password is longer than ${MAX_PASSWORD_BYTES} bytes`));
      else if (newline !== -1) finish();
    };
    const onEnd = (): void => finish();
    const onError = (err: Error): void => finish(err);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onError);
    stdin.resume();
  });
}

type TtyInput = NodeJS.ReadableStream & { isTTY: true; setRawMode(raw: boolean): unknown };

function isTty(stdin: NodeJS.ReadableStream): stdin is TtyInput {
  const candidate = stdin as { isTTY?: unknown; setRawMode?: unknown };
  return candidate.isTTY === true && typeof candidate.setRawMode === 'function';
}

/**
 * Reads a password typed at a terminal with echo off (raw mode). Resolves undefined when the
 * user presses Ctrl-C, which raw mode delivers as a byte instead of SIGINT.
 */
function readHidden(stdin: TtyInput, prompt: NodeJS.WritableStream): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let typed = '';
    const finish = (result: string | undefined, err?: Error): void => {
      stdin.removeListener('data', onData);
      stdin.removeListener('error', onError);
      stdin.setRawMode(false);
      stdin.pause();
      prompt.write('\n');
      if (err !== undefined) reject(err);
      else resolve(result);
    };
    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (const ch of text) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish(typed);
          return;
        }
        if (ch === '\u0003') {
          finish(undefined);
          return;
        }
        if (ch === '\u007f' || ch === '\b') typed = Array.from(typed).slice(0, -1).join('');
        else if (ch >= ' ') typed += ch;
        if (Buffer.byteLength(typed) > MAX_PASSWORD_BYTES) {
          finish(undefined, new Error(`password is longer than ${MAX_PASSWORD_BYTES} bytes`));
          return;
        }
      }
    };
    const onError = (err: Error): void => finish(undefined, err);
    prompt.write('Password: ');
    stdin.setRawMode(true);
    stdin.on('data', onData);
    stdin.on('error', onError);
    stdin.resume();
  });
}

function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}
