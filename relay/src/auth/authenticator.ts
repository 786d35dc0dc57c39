// The user lookup behind SMTP AUTH: username → record, password check through the verify
// cache, and the outcome the SMTP layer turns into a reply.
import type { UserRecord } from '../config/schema.ts';
import { isSluiceError, SluiceError } from '../errors.ts';
import { assertSupportedHash } from './password.ts';
import { VerifyCache, type VerifyCacheStats } from './verify-cache.ts';

export type AuthOutcome =
  | { ok: true; user: UserRecord }
  | { ok: false; reason: 'auth_failed' | 'auth_suspended' };

export type AuthenticatorOptions = {
  /** How long a successful verification is remembered; 0 turns the cache off. */
  cacheTtlMs: number;
  maxEntries?: number;
  /** Milliseconds on a monotonic clock; tests inject their own. */
  now?: () => number;
};

// An unknown username is checked against this hash (same scrypt cost as the default) so the
// reply takes as long as a wrong password would. Its password was random and discarded.
const DUMMY_HASH = '$scrypt$ln=15,r=8,p=1$7HRvDiGzE0KCLfmJcvli+g$ktK0noLkIDrtKY21rVh4O+M+jqiDRDLGxEjqZK9g1Xk';

export class Authenticator {
  readonly #cache: VerifyCache;
  #users: ReadonlyMap<string, UserRecord> = new Map();

  constructor(options: AuthenticatorOptions) {
    this.#cache = new VerifyCache({
      ttlMs: options.cacheTtlMs,
      ...(options.maxEntries !== undefined && { maxEntries: options.maxEntries }),
      ...(options.now !== undefined && { now: options.now }),
    });
  }

  /**
   * Checks a user table without putting it in force: a duplicate username
   * (SLUICE_ERR_DUPLICATE_USER) or an unusable hash (SLUICE_ERR_PASSWORD_HASH) throws.
   * A reload builds its table first, so a bad file changes nothing.
   */
  static table(users: readonly UserRecord[]): ReadonlyMap<string, UserRecord> {
    const next = new Map<string, UserRecord>();
    for (const user of users) {
      if (next.has(user.username)) {
        throw new SluiceError('SLUICE_ERR_DUPLICATE_USER', `user "${user.username}" is listed twice`);
      }
      try {
        assertSupportedHash(user.passwordHash);
      } catch (err: unknown) {
        if (!isSluiceError(err)) throw err;
        throw new SluiceError(err.code, `user "${user.username}": ${err.message}`, { cause: err });
      }
      next.set(user.username, user);
    }
    return next;
  }

  /** Replaces the user table; all or nothing (see table()). */
  setUsers(users: readonly UserRecord[] | ReadonlyMap<string, UserRecord>): void {
    this.#users = users instanceof Map ? users : Authenticator.table(users as readonly UserRecord[]);
  }

  /** Checks a username (exact, case-sensitive) and password. */
  async authenticate(username: string, password: string): Promise<AuthOutcome> {
    const user = this.#users.get(username);
    if (user === undefined) {
      // Spend the same work as for a real user so timing does not reveal which names exist.
      await this.#cache.verify(username, DUMMY_HASH, password);
      return { ok: false, reason: 'auth_failed' };
    }
    if (!(await this.#cache.verify(username, user.passwordHash, password)))
      return { ok: false, reason: 'auth_failed' };
    // Only someone who knows the password learns that the account is suspended.
    return user.suspended ? { ok: false, reason: 'auth_suspended' } : { ok: true, user };
  }

  get userCount(): number {
    return this.#users.size;
  }

  /** Cache counters, for metrics. */
  get cacheStats(): VerifyCacheStats {
    return this.#cache.stats;
  }
}
