// SmtpUsers → the relay's user records (usernames and password hashes, never a plain
// password), minus the users that cannot be added, each with the reason. Pure: the
// hash of each user comes in through `hashOf`, which answers at once or not yet (the
// reconcile hashes plain passwords off its own path, see reconcile/hash-pool.ts).
import type { UserRecord } from '@sluice/relay/config-schema';
import { assertSupportedHash, isSupportedHash } from '@sluice/relay/password';
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

/** What became of one SmtpUser, without its name. */
export type Outcome = Omit<UserOutcome, 'name'>;

/** A password as the relay needs it: a hash given in the Secret, or one computed for a plain password. */
export type HashOf = (
  username: string,
  password: string,
) => { hash: string; fingerprint?: string } | undefined;

export interface EvaluatedUsers {
  records: Array<{ record: UserRecord; fingerprint?: string }>;
  /** One per SmtpUser whose fate is known (not those whose hash is still being computed). */
  outcomes: UserOutcome[];
  /** Usernames whose hash is still being computed. */
  pending: string[];
  /** Every username that will be in the users file once its hash is ready. */
  accepted: string[];
}

/** The plain password's hash, or the hash given in the Secret as it is. */
export function givenHash(password: string): string | undefined {
  return isSupportedHash(password) ? password : undefined;
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

export function evaluateUsers(options: {
  users: readonly UserInput[];
  handoffPassword: string;
  hashOf: HashOf;
  /**
   * Whether this user's value is the hash the users file already holds for it: then it
   * was checked before and is not parsed again (100,000 users a reconcile).
   */
  knownHash?: (username: string, value: string) => boolean;
}): EvaluatedUsers {
  const out: EvaluatedUsers = { records: [], outcomes: [], pending: [], accepted: [] };
  // a username two SmtpUsers claim is refused on both, each told of the other: which of two
  // passwords is the customer's is for a person to decide, not the older object (a name
  // per username; a list only where there are several: 100,000 users a reconcile)
  const claims = new Map<string, string | string[]>();
  for (const { user } of options.users) {
    const was = claims.get(user.spec.username);
    if (was === undefined) claims.set(user.spec.username, user.metadata.name);
    else if (typeof was === 'string') claims.set(user.spec.username, [was, user.metadata.name]);
    else was.push(user.metadata.name);
  }
  // oldest first, so that shards and outcomes keep one order (plain comparison of the
  // cached strings: localeCompare costs a second a reconcile at 100,000 users, and a sort
  // key per user is 100,000 strings made for one sort)
  const sorted = [...options.users].sort(({ user: a }, { user: b }) => {
    const ta = a.metadata.creationTimestamp ?? '';
    const tb = b.metadata.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const na = a.metadata.name;
    const nb = b.metadata.name;
    return na < nb ? -1 : na > nb ? 1 : 0;
  });
  for (const { user, password } of sorted) {
    const name = user.metadata.name;
    const username = user.spec.username;
    const refuse = (reason: string, message: string) =>
      out.outcomes.push({ name, ok: false, reason, message });
    if (username === INTERNAL_USER) {
      refuse('ReservedUsername', `username ${username} is reserved`);
      continue;
    }
    const claimants = claims.get(username);
    if (Array.isArray(claimants)) {
      const others = claimants.filter((n) => n !== name).sort();
      refuse(
        'DuplicateUsername',
        `username ${username} is also used by SmtpUser ${others.join(', ')}; none of them can authenticate until all but one are renamed or deleted`,
      );
      continue;
    }
    if (password === undefined || password === '') {
      const ref = user.spec.passwordSecretRef;
      refuse(
        'SecretNotFound',
        `Secret ${ref.name} with key ${ref.key} not found or empty; create it to enable this user`,
      );
      continue;
    }
    const hashProblem = options.knownHash?.(username, password) ? undefined : unusableHash(password);
    if (hashProblem !== undefined) {
      const ref = user.spec.passwordSecretRef;
      refuse(
        'InvalidPasswordHash',
        `Secret ${ref.name} key ${ref.key} holds a password hash the relay cannot use (${hashProblem}); fix the hash or put the plain password there`,
      );
      continue;
    }
    out.accepted.push(username);
    const hashed = options.hashOf(username, password);
    if (!hashed) {
      out.pending.push(username);
      continue;
    }
    out.records.push({
      record: {
        username,
        passwordHash: hashed.hash,
        suspended: user.spec.suspended,
        ...(user.spec.allowedSenders ? { allowedSenders: user.spec.allowedSenders } : {}),
        ...(user.spec.rateLimits ? { rateLimits: user.spec.rateLimits } : {}),
      },
      ...(hashed.fingerprint ? { fingerprint: hashed.fingerprint } : {}),
    });
    out.outcomes.push({
      name,
      ok: true,
      reason: user.spec.suspended ? 'Suspended' : 'Active',
      message: user.spec.suspended
        ? 'The user is suspended and cannot authenticate'
        : 'The user can relay mail',
    });
  }
  out.accepted.push(INTERNAL_USER);
  const internal = options.hashOf(INTERNAL_USER, options.handoffPassword);
  if (internal) {
    out.records.push({
      record: { username: INTERNAL_USER, passwordHash: internal.hash, suspended: false, rateLimits: [] },
      ...(internal.fingerprint ? { fingerprint: internal.fingerprint } : {}),
    });
  } else out.pending.push(INTERNAL_USER);
  return out;
}
