// SmtpUsers → the relay's users file (usernames and password hashes, never a plain
// password). A Secret may hold a plain password or a hash; a plain one is hashed here,
// and not again while it is unchanged: the hash already in the users Secret is reused
// when it still verifies.
import { createHash } from 'node:crypto';
import type { UserRecord } from '@sluice/relay/config-schema';
import { assertSupportedHash, hashPassword, isSupportedHash, verifyPassword } from '@sluice/relay/password';
import { stringify } from 'yaml';
import type { SmtpUser } from '../api/types.ts';
import { INTERNAL_USER } from './names.ts';

export interface UserInput {
  user: SmtpUser;
  /** The value at spec.passwordSecretRef, or undefined when the Secret or key is missing. */
  password: string | undefined;
}

export interface UserOutcome {
  name: string;
  ok: boolean;
  reason: string;
  message: string;
}

// verified (previous hash, plain password digest) pairs: a reconcile loop does not re-run scrypt
const verified = new Set<string>();

async function hashFor(username: string, value: string, previous: string | undefined): Promise<string> {
  if (isSupportedHash(value)) return value;
  if (previous) {
    const key = `${previous}\0${createHash('sha256').update(username).update('\0').update(value).digest('hex')}`;
    if (verified.has(key)) return previous;
    if (await verifyPassword(value, previous).catch(() => false)) {
      verified.add(key);
      return previous;
    }
  }
  return hashPassword(value);
}

// What the users file schema takes for a hash. A value like this that does not parse is
// a broken hash, not a password: hashing it as one would lock the user out silently.
const HASH_PREFIX = /^\$(scrypt|argon2id|2a|2b|2y)\$/;

/** Why a value that looks like a password hash is unusable, or undefined. */
function unusableHash(value: string): string | undefined {
  if (!HASH_PREFIX.test(value) || isSupportedHash(value)) return undefined;
  try {
    assertSupportedHash(value);
  } catch (err: unknown) {
    if (err instanceof Error) return err.message;
  }
  return 'malformed';
}

export async function buildUsersFile(options: {
  users: readonly UserInput[];
  /** username → hash in the users Secret written last time */
  previous: ReadonlyMap<string, string>;
  handoffPassword: string;
}): Promise<{ yaml: string; hashes: Map<string, string>; outcomes: UserOutcome[] }> {
  const records: UserRecord[] = [];
  const outcomes: UserOutcome[] = [];
  const taken = new Map<string, string>();
  const sorted = [...options.users].sort(
    (a, b) =>
      (a.user.metadata.creationTimestamp ?? '').localeCompare(b.user.metadata.creationTimestamp ?? '') ||
      a.user.metadata.name.localeCompare(b.user.metadata.name),
  );
  for (const { user, password } of sorted) {
    const name = user.metadata.name;
    const username = user.spec.username;
    if (username === INTERNAL_USER) {
      outcomes.push({
        name,
        ok: false,
        reason: 'ReservedUsername',
        message: `username ${username} is reserved`,
      });
      continue;
    }
    const owner = taken.get(username);
    if (owner) {
      outcomes.push({
        name,
        ok: false,
        reason: 'DuplicateUsername',
        message: `username ${username} is already used by SmtpUser ${owner}`,
      });
      continue;
    }
    if (password === undefined || password === '') {
      const ref = user.spec.passwordSecretRef;
      outcomes.push({
        name,
        ok: false,
        reason: 'SecretNotFound',
        message: `Secret ${ref.name} with key ${ref.key} not found or empty; create it to enable this user`,
      });
      continue;
    }
    const hashProblem = unusableHash(password);
    if (hashProblem !== undefined) {
      const ref = user.spec.passwordSecretRef;
      outcomes.push({
        name,
        ok: false,
        reason: 'InvalidPasswordHash',
        message: `Secret ${ref.name} key ${ref.key} holds a password hash the relay cannot use (${hashProblem}); fix the hash or put the plain password there`,
      });
      continue;
    }
    taken.set(username, name);
    const passwordHash = await hashFor(username, password, options.previous.get(username));
    records.push({
      username,
      passwordHash,
      suspended: user.spec.suspended,
      ...(user.spec.allowedSenders ? { allowedSenders: user.spec.allowedSenders } : {}),
      ...(user.spec.rateLimits ? { rateLimits: user.spec.rateLimits } : {}),
    });
    outcomes.push({
      name,
      ok: true,
      reason: user.spec.suspended ? 'Suspended' : 'Active',
      message: user.spec.suspended
        ? 'The user is suspended and cannot authenticate'
        : 'The user can relay mail',
    });
  }
  records.push({
    username: INTERNAL_USER,
    passwordHash: await hashFor(INTERNAL_USER, options.handoffPassword, options.previous.get(INTERNAL_USER)),
    suspended: false,
    rateLimits: [],
  });
  records.sort((a, b) => a.username.localeCompare(b.username));
  return {
    yaml: stringify({ users: records }, { lineWidth: 0 }),
    hashes: new Map(records.map((r) => [r.username, r.passwordHash])),
    outcomes,
  };
}
