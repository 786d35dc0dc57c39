import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import type { UserRecord } from '../config/schema.ts';
import { isSluiceError } from '../errors.ts';
import { Authenticator } from './authenticator.ts';
import { hashPassword } from './password.ts';

const TTL_MS = 30_000;

describe('Authenticator', () => {
  let alice: UserRecord;
  let bob: UserRecord;
  let carol: UserRecord;
  before(async () => {
    alice = { username: 'alice', passwordHash: await hashPassword('alice-pw'), suspended: false };
    bob = {
      username: 'bob',
      passwordHash: await hashPassword('bob-pw', { scheme: 'argon2id' }),
      allowedSenders: ['bob@example.com'],
      suspended: false,
    };
    carol = { username: 'carol', passwordHash: await bcrypt.hash('carol-pw', 4), suspended: true };
  });

  function make(now?: () => number): Authenticator {
    const auth = new Authenticator({ cacheTtlMs: TTL_MS, ...(now && { now }) });
    auth.setUsers([alice, bob, carol]);
    return auth;
  }

  it('accepts the right password and returns the user record', async () => {
    const auth = make();
    assert.deepEqual(await auth.authenticate('alice', 'alice-pw'), { ok: true, user: alice });
    assert.deepEqual(await auth.authenticate('bob', 'bob-pw'), { ok: true, user: bob });
    assert.equal(auth.userCount, 3);
  });

  it('fails a wrong password', async () => {
    const auth = make();
    assert.deepEqual(await auth.authenticate('alice', 'bob-pw'), { ok: false, reason: 'auth_failed' });
    assert.deepEqual(await auth.authenticate('alice', ''), { ok: false, reason: 'auth_failed' });
  });

  it('fails an unknown user only after spending a verification', async () => {
    const auth = make();
    assert.deepEqual(await auth.authenticate('mallory', 'alice-pw'), { ok: false, reason: 'auth_failed' });
    assert.equal(auth.cacheStats.verifications, 1);
  });

  it('compares usernames exactly', async () => {
    const auth = make();
    assert.deepEqual(await auth.authenticate('Alice', 'alice-pw'), { ok: false, reason: 'auth_failed' });
    assert.deepEqual(await auth.authenticate('alice ', 'alice-pw'), { ok: false, reason: 'auth_failed' });
  });

  it('reports suspension only to someone who knows the password', async () => {
    const auth = make();
    assert.deepEqual(await auth.authenticate('carol', 'carol-pw'), { ok: false, reason: 'auth_suspended' });
    assert.deepEqual(await auth.authenticate('carol', 'wrong'), { ok: false, reason: 'auth_failed' });
  });

  it('answers a repeated login from the cache', async () => {
    const auth = make();
    await auth.authenticate('alice', 'alice-pw');
    assert.deepEqual(await auth.authenticate('alice', 'alice-pw'), { ok: true, user: alice });
    assert.deepEqual(auth.cacheStats, { hits: 1, coalesced: 0, verifications: 1 });
  });

  it('verifies 10 concurrent logins of one user once', async () => {
    const auth = make();
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () => auth.authenticate('alice', 'alice-pw')),
    );
    assert.ok(outcomes.every((o) => o.ok));
    assert.equal(auth.cacheStats.verifications, 1);
  });

  it('verifies again once the cache TTL has passed', async () => {
    let t = 0;
    const auth = make(() => t);
    await auth.authenticate('alice', 'alice-pw');
    t = TTL_MS;
    assert.deepEqual(await auth.authenticate('alice', 'alice-pw'), { ok: true, user: alice });
    assert.equal(auth.cacheStats.verifications, 2);
  });

  it('stops accepting the old password after a password change', async () => {
    const auth = make();
    assert.equal((await auth.authenticate('alice', 'alice-pw')).ok, true);
    const changed = { ...alice, passwordHash: await hashPassword('alice-new', { scheme: 'argon2id' }) };
    auth.setUsers([changed, bob, carol]);
    assert.deepEqual(await auth.authenticate('alice', 'alice-pw'), { ok: false, reason: 'auth_failed' });
    assert.deepEqual(await auth.authenticate('alice', 'alice-new'), { ok: true, user: changed });
  });

  it('applies suspension and removal on reload despite cached logins', async () => {
    const auth = make();
    assert.equal((await auth.authenticate('alice', 'alice-pw')).ok, true);
    assert.equal((await auth.authenticate('bob', 'bob-pw')).ok, true);
    auth.setUsers([{ ...alice, suspended: true }]);
    assert.equal(auth.userCount, 1);
    assert.deepEqual(await auth.authenticate('alice', 'alice-pw'), { ok: false, reason: 'auth_suspended' });
    assert.deepEqual(await auth.authenticate('bob', 'bob-pw'), { ok: false, reason: 'auth_failed' });
  });

  it('rejects a table with a duplicate username and keeps the previous one', async () => {
    const auth = make();
    assert.throws(
      () => auth.setUsers([alice, { ...bob, username: 'alice' }]),
      (err: unknown) => isSluiceError(err, 'SLUICE_ERR_DUPLICATE_USER') && /"alice"/.test(err.message),
    );
    assert.equal(auth.userCount, 3);
    assert.equal((await auth.authenticate('bob', 'bob-pw')).ok, true);
  });

  it('rejects a table with an unusable hash, naming the user but not the hash', async () => {
    const auth = make();
    const broken = '$scrypt$ln=15,r=8$c2FsdHNhbHQ$c2FsdHNhbHRzYWx0c2FsdA';
    assert.throws(
      () => auth.setUsers([alice, { ...bob, passwordHash: broken }]),
      (err: unknown) =>
        isSluiceError(err, 'SLUICE_ERR_PASSWORD_HASH') &&
        err.message.startsWith('user "bob": ') &&
        !err.message.includes('c2FsdHNhbHQ'),
    );
    assert.equal(auth.userCount, 3);
  });
});
