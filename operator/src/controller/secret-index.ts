// Which RelayPolicies depend on which Secrets (directly, or through their SmtpUsers), so
// that a Secret event requeues exactly the policies that read it, and the operator keeps
// the data of exactly those Secrets. References are kept per owner (a policy for the
// Secrets it names, an SmtpUser for its password Secret), so one user event updates one
// entry: rebuilding a policy's set from all its users on every user event would cost
// O(users²) while 100,000 users are listed at start.

export class SecretIndex {
  /** owner → the policy it counts for and the Secrets it names */
  readonly #byOwner = new Map<string, { policyKey: string; secrets: readonly string[] }>();
  /** secret → policy → how many owners name it */
  readonly #bySecret = new Map<string, Map<string, number>>();
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
      this.#byOwner.set(owner, { policyKey, secrets });
      for (const s of secrets) {
        bump(this.#bySecret, s, policyKey, 1);
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
    for (const s of entry.secrets) {
      bump(this.#bySecret, s, entry.policyKey, -1);
      bump(this.#byPolicy, entry.policyKey, s, -1);
    }
    return [...entry.secrets];
  }

  /** The policies that read a Secret (namespace/name). */
  policiesFor(secretKey: string): string[] {
    return [...(this.#bySecret.get(secretKey)?.keys() ?? [])];
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
