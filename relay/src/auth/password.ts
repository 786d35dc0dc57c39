// Password hashes in the users file are PHC strings (scrypt, argon2id) or bcrypt hashes
// carried over from other systems. Verification is deliberately slow; callers that verify
// often go through the verify cache.
import * as nodeCrypto from 'node:crypto';
import bcrypt from 'bcryptjs';
import { SluiceError } from '../errors.ts';

export type HashScheme = 'scrypt' | 'argon2id';

// A relay verifies several passwords in parallel (one per libuv thread), so a hash whose
// parameters need more memory than this is refused instead of exhausting the pod.
const MAX_MEMORY_BYTES = 256 * 1024 * 1024;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

const SCRYPT_DEFAULT = { ln: 15, r: 8, p: 1 } as const;
// OWASP's recommended argon2id profile: 19 MiB, 2 passes, 1 lane.
const ARGON2_DEFAULT = { m: 19456, t: 2, p: 1 } as const;
const ARGON2_VERSION = 19;

const B64 = /^[A-Za-z0-9+/]+$/;
const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
const BCRYPT_SALT_CHARS = 29; // "$2b$10$" + 22 characters of salt
const BCRYPT_HASH_CHARS = 31;

type ScryptHash = { scheme: 'scrypt'; ln: number; r: number; p: number; salt: Buffer; hash: Buffer };
type Argon2Hash = { scheme: 'argon2id'; m: number; t: number; p: number; salt: Buffer; hash: Buffer };
type BcryptHash = { scheme: 'bcrypt'; encoded: string };
type ParsedHash = ScryptHash | Argon2Hash | BcryptHash;

/** Hashes a password for the users file (scrypt unless told otherwise). */
export async function hashPassword(plain: string, options: { scheme?: HashScheme } = {}): Promise<string> {
  const scheme = options.scheme ?? 'scrypt';
  const salt = nodeCrypto.randomBytes(SALT_BYTES);
  if (scheme === 'scrypt') {
    const { ln, r, p } = SCRYPT_DEFAULT;
    const hash = await scrypt(plain, { scheme, ln, r, p, salt, hash: Buffer.alloc(KEY_BYTES) });
    return `$scrypt$ln=${ln},r=${r},p=${p}$${b64(salt)}$${b64(hash)}`;
  }
  if (scheme === 'argon2id') {
    const { m, t, p } = ARGON2_DEFAULT;
    const hash = await argon2id(plain, { scheme, m, t, p, salt, hash: Buffer.alloc(KEY_BYTES) });
    return `$argon2id$v=${ARGON2_VERSION}$m=${m},t=${t},p=${p}$${b64(salt)}$${b64(hash)}`;
  }
  throw new SluiceError('SLUICE_ERR_PASSWORD_HASH', `unsupported hash scheme "${String(scheme)}"`);
}

/**
 * Resolves true when `plain` matches `stored`, false when it does not. Rejects with
 * SLUICE_ERR_PASSWORD_HASH when `stored` is malformed or its scheme cannot be verified here.
 */
export async function verifyPassword(plain: string, stored: string): Promise<boolean> {
  const parsed = parseHash(stored);
  switch (parsed.scheme) {
    case 'scrypt':
      return equal(await scrypt(plain, parsed), parsed.hash);
    case 'argon2id':
      return equal(await argon2id(plain, parsed), parsed.hash);
    case 'bcrypt': {
      // bcryptjs is pure JavaScript and runs on the main thread; it is accepted so users can
      // migrate, and the verify cache keeps it off the hot path.
      const computed = await bcrypt.hash(plain, parsed.encoded.slice(0, BCRYPT_SALT_CHARS));
      return equal(
        Buffer.from(computed.slice(-BCRYPT_HASH_CHARS)),
        Buffer.from(parsed.encoded.slice(-BCRYPT_HASH_CHARS)),
      );
    }
  }
}

/** True when `stored` is well formed and its scheme can be verified by this process. */
export function isSupportedHash(stored: string): boolean {
  try {
    parseHash(stored);
    return true;
  } catch (err: unknown) {
    if (err instanceof SluiceError) return false;
    throw err;
  }
}

/** Throws SLUICE_ERR_PASSWORD_HASH, naming the problem (never the hash), when `stored` is unusable. */
export function assertSupportedHash(stored: string): void {
  parseHash(stored);
}

function parseHash(stored: string): ParsedHash {
  if (typeof stored !== 'string' || stored.length === 0) throw malformed('password hash is empty');
  if (stored.startsWith('$2')) {
    if (!BCRYPT.test(stored)) {
      throw malformed('bcrypt hash must look like $2b$<cost 04-31>$<53 characters of salt and hash>');
    }
    return { scheme: 'bcrypt', encoded: stored };
  }
  const fields = stored.split('$');
  const id = fields[1];
  if (fields[0] !== '' || id === undefined) throw malformed('password hash must start with "$<scheme>$"');
  if (id === 'scrypt') return parseScrypt(fields);
  if (id === 'argon2id') return parseArgon2id(fields);
  throw malformed(
    `password hash scheme "${id.slice(0, 16)}" is not supported (use scrypt, argon2id or bcrypt)`,
  );
}

function parseScrypt(fields: string[]): ScryptHash {
  // ['', 'scrypt', 'ln=15,r=8,p=1', salt, hash]
  if (fields.length !== 5) throw malformed('scrypt hash must be $scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>');
  const params = parseParams('scrypt', fields[2] ?? '', ['ln', 'r', 'p']);
  const ln = bounded('scrypt', 'ln', params.ln, 1, 24);
  const r = bounded('scrypt', 'r', params.r, 1, 32);
  const p = bounded('scrypt', 'p', params.p, 1, 16);
  if (128 * r * 2 ** ln > MAX_MEMORY_BYTES) {
    throw malformed(`scrypt parameters ln=${ln},r=${r} need more than ${MAX_MEMORY_BYTES / 2 ** 20} MiB`);
  }
  const salt = decodeB64('scrypt', 'salt', fields[3], 8, 64);
  const hash = decodeB64('scrypt', 'hash', fields[4], 16, 64);
  return { scheme: 'scrypt', ln, r, p, salt, hash };
}

function parseArgon2id(fields: string[]): Argon2Hash {
  // ['', 'argon2id', 'v=19', 'm=19456,t=2,p=1', salt, hash]
  if (fields.length !== 6) {
    throw malformed('argon2id hash must be $argon2id$v=19$m=<n>,t=<n>,p=<n>$<salt>$<hash>');
  }
  if (fields[2] !== `v=${ARGON2_VERSION}`)
    throw malformed(`argon2id hash must be version v=${ARGON2_VERSION}`);
  const params = parseParams('argon2id', fields[3] ?? '', ['m', 't', 'p']);
  const p = bounded('argon2id', 'p', params.p, 1, 16);
  const m = bounded('argon2id', 'm', params.m, 8 * p, MAX_MEMORY_BYTES / 1024);
  const t = bounded('argon2id', 't', params.t, 1, 32);
  const salt = decodeB64('argon2id', 'salt', fields[4], 8, 64);
  const hash = decodeB64('argon2id', 'hash', fields[5], 16, 64);
  if (typeof nodeCrypto.argon2 !== 'function') {
    throw malformed('argon2id needs Node.js 24.7 or later (crypto.argon2); this process cannot verify it');
  }
  return { scheme: 'argon2id', m, t, p, salt, hash };
}

function parseParams<K extends string>(scheme: string, text: string, keys: readonly K[]): Record<K, string> {
  const out = new Map<string, string>();
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : '';
    if (!(keys as readonly string[]).includes(key) || out.has(key)) {
      throw malformed(`${scheme} parameters must be exactly ${keys.map((k) => `${k}=<n>`).join(',')}`);
    }
    out.set(key, pair.slice(eq + 1));
  }
  const missing = keys.find((k) => !out.has(k));
  if (missing !== undefined) throw malformed(`${scheme} hash is missing parameter ${missing}`);
  return Object.fromEntries(out) as Record<K, string>;
}

function bounded(scheme: string, name: string, text: string, min: number, max: number): number {
  const value = DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw malformed(`${scheme} parameter ${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function decodeB64(scheme: string, name: string, text: string | undefined, min: number, max: number): Buffer {
  // PHC strings use unpadded standard base64; Buffer.from would silently skip bad characters.
  if (text === undefined || !B64.test(text) || text.length % 4 === 1) {
    throw malformed(`${scheme} ${name} is not valid unpadded base64`);
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length < min || bytes.length > max) {
    throw malformed(`${scheme} ${name} must be ${min} to ${max} bytes, not ${bytes.length}`);
  }
  return bytes;
}

function scrypt(plain: string, params: ScryptHash): Promise<Buffer> {
  const { ln, r, p, salt, hash } = params;
  const N = 2 ** ln;
  // OpenSSL counts the V array (128·r·(N+2)) plus the B array (128·r·p) against maxmem.
  const maxmem = 128 * r * (N + p + 2);
  return new Promise((resolve, reject) => {
    nodeCrypto.scrypt(plain, salt, hash.length, { N, r, p, maxmem }, (err, key) => {
      if (err)
        reject(
          new SluiceError('SLUICE_ERR_PASSWORD_HASH', 'scrypt rejected the hash parameters', { cause: err }),
        );
      else resolve(key);
    });
  });
}

function argon2id(plain: string, params: Argon2Hash): Promise<Buffer> {
  if (typeof nodeCrypto.argon2 !== 'function') {
    return Promise.reject(malformed('argon2id needs Node.js 24.7 or later (crypto.argon2)'));
  }
  const { m, t, p, salt, hash } = params;
  return new Promise((resolve, reject) => {
    nodeCrypto.argon2(
      'argon2id',
      { message: plain, nonce: salt, parallelism: p, tagLength: hash.length, memory: m, passes: t },
      (err, key) => {
        if (err)
          reject(
            new SluiceError('SLUICE_ERR_PASSWORD_HASH', 'argon2 rejected the hash parameters', {
              cause: err,
            }),
          );
        else resolve(key);
      },
    );
  });
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && nodeCrypto.timingSafeEqual(a, b);
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}

function malformed(message: string): SluiceError {
  return new SluiceError('SLUICE_ERR_PASSWORD_HASH', message);
}
