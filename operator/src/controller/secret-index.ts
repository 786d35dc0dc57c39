// Which RelayPolicies depend on which Secrets (directly, or through their SmtpUsers), so
// that a Secret event requeues exactly the policies that read it.

export class SecretIndex {
  readonly #byPolicy = new Map<string, Set<string>>();
  readonly #bySecret = new Map<string, Set<string>>();

  /** Replaces what a policy (namespace/name) depends on. */
  set(policyKey: string, secretKeys: Iterable<string>): void {
    this.delete(policyKey);
    const secrets = new Set(secretKeys);
    if (secrets.size === 0) return;
    this.#byPolicy.set(policyKey, secrets);
    for (const s of secrets) {
      let policies = this.#bySecret.get(s);
      if (!policies) {
        policies = new Set();
        this.#bySecret.set(s, policies);
      }
      policies.add(policyKey);
    }
  }

  delete(policyKey: string): void {
    for (const s of this.#byPolicy.get(policyKey) ?? []) {
      const policies = this.#bySecret.get(s);
      policies?.delete(policyKey);
      if (policies?.size === 0) this.#bySecret.delete(s);
    }
    this.#byPolicy.delete(policyKey);
  }

  /** The policies that read a Secret (namespace/name). */
  policiesFor(secretKey: string): string[] {
    return [...(this.#bySecret.get(secretKey) ?? [])];
  }
}
