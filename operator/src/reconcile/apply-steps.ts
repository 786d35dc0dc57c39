// How a RelayPolicy's reconcile applies its owned objects: each on its own, so that one
// the API server refuses is reported in status (Degraded, ApplyFailed), retried, and does
// not hold back the others. No answer at all (the API server unreachable) fails the whole
// reconcile at once: the status could not be written either.
import type { RelayPolicy } from '../api/types.ts';
import { toKubeApiError } from '../kube/api-error.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { keyOf } from '../kube/resources.ts';
import { applyIfChanged } from './applied-hash.ts';

/** Some owned objects could not be applied; the policy's status says which and why. */
export class ApplyFailedError extends Error {
  readonly code = 'SLUICE_ERR_APPLY_FAILED';
  readonly failures: readonly string[];
  constructor(key: string, failures: readonly string[]) {
    super(`${key}: ${failures.join('; ')}`);
    this.name = 'ApplyFailedError';
    this.failures = failures;
  }
}

export interface ReconcileLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface ApplyFailure {
  /** CamelCase, for the Degraded condition */
  reason: string;
  message: string;
}

/** The writes of one reconcile of one policy: how many objects changed, and what failed. */
export class ApplySteps {
  readonly #client: KubeClient;
  readonly #policy: RelayPolicy;
  readonly #log: ReconcileLogger | undefined;
  readonly failures: ApplyFailure[] = [];
  changed = 0;

  constructor(client: KubeClient, policy: RelayPolicy, log?: ReconcileLogger) {
    this.#client = client;
    this.#policy = policy;
    this.#log = log;
  }

  /** Runs a step; an API error is recorded as a failure (and undefined returned), except no answer at all. */
  async attempt<T>(what: string, step: () => Promise<T>): Promise<T | undefined> {
    try {
      return await step();
    } catch (err: unknown) {
      const e = toKubeApiError(err);
      if (e.status === 0) throw e;
      this.failures.push({ reason: 'ApplyFailed', message: `${what}: ${e.message}` });
      this.#log?.warn({ relayPolicy: this.#key(), object: what, err: e.message }, 'apply failed');
      return undefined;
    }
  }

  /** Applies an object unless the live one holds it already (see applied-hash.ts). */
  apply<T extends KubeObject>(desired: KubeObject, live?: T | null): Promise<T | undefined> {
    return this.attempt(`${desired.kind} ${desired.metadata.name}`, async () => {
      const result = await applyIfChanged<T>(this.#client, desired, live);
      if (result.applied) this.changed++;
      return result.object;
    });
  }

  /** Deletes an object this policy owns (e.g. the HPA once autoscaling is off). */
  async deleteOwned(apiVersion: string, kind: string, name: string): Promise<void> {
    await this.attempt(`${kind} ${name}`, async () => {
      const { namespace, uid } = this.#policy.metadata;
      const live = await this.#client.get(apiVersion, kind, namespace, name);
      if (!live?.metadata.ownerReferences?.some((r) => r.uid === uid)) return;
      if (await this.#client.delete(apiVersion, kind, namespace, name)) this.changed++;
    });
  }

  /** Fails the reconcile (after its status is written) when a step failed: the work queue retries with backoff. */
  throwIfFailed(): void {
    if (this.failures.length > 0)
      throw new ApplyFailedError(
        this.#key(),
        this.failures.map((f) => f.message),
      );
  }

  #key(): string {
    return keyOf(this.#policy.metadata.namespace, this.#policy.metadata.name);
  }
}
