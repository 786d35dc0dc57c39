// Which RelayPolicies depend on which Secrets (directly, or through their SmtpUsers), so
// that a Secret event requeues exactly the policies that read it, and the operator keeps
// the data of exactly those Secrets. References are kept per owner (a policy for the
// Secrets it names, an SmtpUser for its password Secret), so one user event updates one
// entry: rebuilding a policy's set from all its users on every user event would cost
// O(users²) while 100,000 users are listed at start.

//
// Memory: with 100,000 users there is an entry per user and per Secret, so the usual
// case is kept small: an owner naming one Secret holds it as a string, not an array, and
// a Secret named once holds its policy as a string, not a map of counts.

/** The Secrets an owner names: one (a user's password Secret), or several (a policy's) */
type Named = string | readonly string[];
/** Who names a Secret: one owner of one policy, or policy → how many owners */
type Refs = string | Map<string, number>;

const each = (named: Named): readonly string[] => (typeof named === 'string' ? [named] : named);

export class SecretIndex {
  /** owner → the policy it counts for and the Secrets it names */
  readonly #byOwner = new Map<string, { policyKey: string; secrets: Named }>();
  /** secret → the policies that read it */
  readonly #bySecret = new Map<string, Refs>();
  /** policy → secret → how many owners name it */
  readonly #byPolicy = new Map<string, Map<string, number>>();

  /** Replaces what a policy (namespace/name) depends on directly. */
  set(policyKey: string, secretKeys: Iterable<string>): string[] {
    return this.setOwner(`policy:${policyKey}`, policyKey, secretKeys);
  }

  /**
   * Replaces the Secrets an owner names for a policy; returns the Secrets no policy
   * depends on any more.
   */
  setOwner(owner: string, policyKey: string, secretKeys: Iterable<string>): string[] {
    const released = this.#release(owner);
    // an array, not a Set: an SmtpUser names one Secret, and there are 100,000 of them
    const secrets = [...new Set(secretKeys)];
    if (secrets.length > 0) {
      this.#byOwner.set(owner, {
        policyKey,
        secrets: secrets.length === 1 ? (secrets[0] as string) : secrets,
      });
      for (const s of secrets) {
        this.#refer(s, policyKey, 1);
        bump(this.#byPolicy, policyKey, s, 1);
      }
    }
    return released.filter((s) => !this.#bySecret.has(s));
  }

  /** Drops a policy's direct references. */
  delete(policyKey: string): string[] {
    return this.deleteOwner(`policy:${policyKey}`);
  }

  deleteOwner(owner: string): string[] {
    return this.#release(owner).filter((s) => !this.#bySecret.has(s));
  }

  #release(owner: string): string[] {
    const entry = this.#byOwner.get(owner);
    if (!entry) return [];
    this.#byOwner.delete(owner);
    for (const s of each(entry.secrets)) {
      this.#refer(s, entry.policyKey, -1);
      bump(this.#byPolicy, entry.policyKey, s, -1);
    }
    return [...each(entry.secrets)];
  }

  /** Counts one owner more (1) or less (-1) naming `secret` for `policy`. */
  #refer(secret: string, policy: string, by: 1 | -1): void {
    const refs = this.#bySecret.get(secret);
    if (refs === undefined) {
      if (by > 0) this.#bySecret.set(secret, policy);
      return;
    }
    if (typeof refs === 'string') {
      if (by > 0) this.#bySecret.set(secret, new Map([[refs, 1]]).set(policy, refs === policy ? 2 : 1));
      else if (refs === policy) this.#bySecret.delete(secret);
      return;
    }
    const n = (refs.get(policy) ?? 0) + by;
    if (n > 0) refs.set(policy, n);
    else refs.delete(policy);
    if (refs.size === 0) this.#bySecret.delete(secret);
    else if (refs.size === 1) {
      const [only, count] = refs.entries().next().value as [string, number];
      if (count === 1) this.#bySecret.set(secret, only);
    }
  }

  /** The policies that read a Secret (namespace/name). */
  policiesFor(secretKey: string): string[] {
    const refs = this.#bySecret.get(secretKey);
    if (refs === undefined) return [];
    return typeof refs === 'string' ? [refs] : [...refs.keys()];
  }

  /** The Secrets a policy reads, directly or through its users. */
  secretsFor(policyKey: string): string[] {
    return [...(this.#byPolicy.get(policyKey)?.keys() ?? [])];
  }
}

function bump(map: Map<string, Map<string, number>>, outer: string, inner: string, by: number): void {
  let m = map.get(outer);
  if (!m) {
    m = new Map();
    map.set(outer, m);
  }
  const n = (m.get(inner) ?? 0) + by;
  if (n > 0) m.set(inner, n);
  else m.delete(inner);
  if (m.size === 0) map.delete(outer);
}
