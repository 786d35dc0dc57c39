import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { isSluiceError } from '../errors.ts';
import { hashPassword, isSupportedHash, verifyPassword } from './password.ts';

// Reference vectors from other implementations, so the PHC encoding is checked, not just
// our own round trip.
// RFC 7914 §12: scrypt("pleaseletmein", "SodiumChloride", N=16384, r=8, p=1, dkLen=64).
const RFC7914_SCRYPT =
  '$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofLVQylVYT8Pz2LUlwUkKpr55h6F3A1lHkDfzwF7RVdYhw';
// argon2id_hash_encoded() from the reference libargon2, password "hunter2".
const LIBARGON2_ARGON2ID =
  '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$leF08Fu/gOi7XGf5NvDjbfR9GY+siUuPd+cKkq57H/c';
// PHP's password_hash() documentation example, password "rasmuslerdorf".
const PHP_BCRYPT = '$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a';

const SALT = 'c29tZXNhbHRzb21lc2FsdA';
const HASH = 'leF08Fu/gOi7XGf5NvDjbfR9GY+siUuPd+cKkq57H/c';

describe('hashPassword / verifyPassword', () => {
  it('scrypt is the default and round-trips', async () => {
    const stored = await hashPassword('correct horse');
    assert.match(stored, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.equal(isSupportedHash(stored), true);
    assert.equal(await verifyPassword('correct horse', stored), true);
    assert.equal(await verifyPassword('correct horsE', stored), false);
  });

  it('argon2id round-trips, with a fresh salt each time', async () => {
    const first = await hashPassword('pässwörd 🔑', { scheme: 'argon2id' });
    const second = await hashPassword('pässwörd 🔑', { scheme: 'argon2id' });
    assert.match(first, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(first, second);
    assert.equal(await verifyPassword('pässwörd 🔑', first), true);
    assert.equal(await verifyPassword('pässwörd 🔑', second), true);
    assert.equal(await verifyPassword('passwörd 🔑', first), false);
    assert.equal(await verifyPassword('', first), false);
  });

  it('verifies hashes made by other implementations', async () => {
    assert.equal(await verifyPassword('pleaseletmein', RFC7914_SCRYPT), true);
    assert.equal(await verifyPassword('pleaseletmeout', RFC7914_SCRYPT), false);
    assert.equal(await verifyPassword('hunter2', LIBARGON2_ARGON2ID), true);
    assert.equal(await verifyPassword('hunter3', LIBARGON2_ARGON2ID), false);
    assert.equal(await verifyPassword('rasmuslerdorf', PHP_BCRYPT), true);
    assert.equal(await verifyPassword('rasmuslerdorF', PHP_BCRYPT), false);
  });

  it('verifies bcrypt $2a$, $2b$ and $2y$ hashes made with bcryptjs', async () => {
    const made = await bcrypt.hash('s3cret', 4);
    assert.ok(made.startsWith('$2b$04$'));
    for (const prefix of ['$2a$', '$2b$', '$2y$']) {
      const stored = prefix + made.slice(4);
      assert.equal(isSupportedHash(stored), true, prefix);
      assert.equal(await verifyPassword('s3cret', stored), true, prefix);
      assert.equal(await verifyPassword('s3cret!', stored), false, prefix);
    }
  });
});

describe('malformed hashes', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['a plain password', 'hunter2', /must start with/],
    ['an unknown scheme', '$md5$abc$def', /scheme "md5" is not supported/],
    ['scrypt with a missing field', `$scrypt$ln=15,r=8,p=1$${SALT}`, /must be \$scrypt\$/],
    ['scrypt with a missing parameter', `$scrypt$ln=15,r=8$${SALT}$${HASH}`, /missing parameter p/],
    [
      'scrypt with an unknown parameter',
      `$scrypt$ln=15,r=8,p=1,x=2$${SALT}$${HASH}`,
      /exactly ln=<n>,r=<n>,p=<n>/,
    ],
    ['scrypt with a repeated parameter', `$scrypt$ln=15,ln=15,p=1$${SALT}$${HASH}`, /exactly/],
    ['scrypt with a non-numeric cost', `$scrypt$ln=abc,r=8,p=1$${SALT}$${HASH}`, /ln must be an integer/],
    ['scrypt with a leading zero', `$scrypt$ln=015,r=8,p=1$${SALT}$${HASH}`, /ln must be an integer/],
    ['scrypt with ln=0', `$scrypt$ln=0,r=8,p=1$${SALT}$${HASH}`, /ln must be an integer from 1/],
    ['scrypt needing too much memory', `$scrypt$ln=20,r=8,p=1$${SALT}$${HASH}`, /need more than 256 MiB/],
    ['scrypt with a bad base64 salt', `$scrypt$ln=15,r=8,p=1$not*base64$${HASH}`, /salt is not valid/],
    ['scrypt with padded base64', `$scrypt$ln=15,r=8,p=1$${SALT}==$${HASH}`, /salt is not valid/],
    ['scrypt with a short salt', `$scrypt$ln=15,r=8,p=1$c2FsdA$${HASH}`, /salt must be 8 to 64 bytes, not 4/],
    ['scrypt with a short hash', `$scrypt$ln=15,r=8,p=1$${SALT}$c2FsdA`, /hash must be 16 to 64 bytes/],
    ['argon2id without a version', `$argon2id$m=19456,t=2,p=1$${SALT}$${HASH}`, /must be \$argon2id\$v=19/],
    ['argon2id version 16', `$argon2id$v=16$m=19456,t=2,p=1$${SALT}$${HASH}`, /version v=19/],
    [
      'argon2id with too little memory',
      `$argon2id$v=19$m=7,t=2,p=1$${SALT}$${HASH}`,
      /m must be an integer from 8/,
    ],
    ['argon2id with too much memory', `$argon2id$v=19$m=4194304,t=2,p=1$${SALT}$${HASH}`, /m must be/],
    ['argon2id with t=0', `$argon2id$v=19$m=19456,t=0,p=1$${SALT}$${HASH}`, /t must be/],
    ['argon2i (not id)', `$argon2i$v=19$m=19456,t=2,p=1$${SALT}$${HASH}`, /"argon2i" is not supported/],
    ['bcrypt cut short', PHP_BCRYPT.slice(0, -1), /bcrypt hash must look like/],
    ['bcrypt with cost 03', PHP_BCRYPT.replace('$10$', '$03$'), /bcrypt hash/],
    ['bcrypt $2x$', PHP_BCRYPT.replace('$2y$', '$2x$'), /bcrypt hash/],
  ];

  for (const [name, stored, message] of cases) {
    it(`rejects ${name}`, async () => {
      assert.equal(isSupportedHash(stored), false);
      await assert.rejects(verifyPassword('hunter2', stored), (err: unknown) => {
        assert.ok(isSluiceError(err, 'SLUICE_ERR_PASSWORD_HASH'), String(err));
        assert.match(err.message, message);
        // The message names the problem but never echoes the hash (or its salt/digest).
        assert.ok(!err.message.includes(HASH) && !err.message.includes(SALT), err.message);
        if (stored.length > 0) assert.ok(!err.message.includes(stored), err.message);
        return true;
      });
    });
  }
});
