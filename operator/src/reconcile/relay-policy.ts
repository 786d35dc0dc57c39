// The reconcile of one RelayPolicy: from the policy, its SmtpUsers and the Secrets they
// name, apply the ConfigMap, the users and internal Secrets, the StatefulSet, Services,
// PDB, HPA and ServiceMonitor (each only when it changed), then write the status of the
// policy and of its users once. Idempotent: run twice, the second run writes nothing.
// Owned objects carry owner references; deleting the policy leaves them to the garbage
// collector, so a policy that is gone (NotFound) only updates its users' status.
import { randomBytes } from 'node:crypto';
import type { RelayConfig } from '@sluice/relay/config-schema';
import { ConfigError } from '@sluice/relay/config-validate';
import { stringify } from 'yaml';
import { withPolicyDefaults } from '../api/defaults.ts';
import type { RelayPolicy, SendingDomain, SmtpUser } from '../api/types.ts';
import { ADMIN_PORT, names, selectorString } from '../build/names.ts';
import {
  DEFAULT_NETWORK_SETTINGS,
  type NetworkSettings,
  relayNetworkPolicy,
} from '../build/network-policy.ts';
import { buildRelayConfig, restartHash } from '../build/relay-config.ts';
import { DEFAULT_RELAY_DEFAULTS, type RelayDefaults, relayImageOf } from '../build/relay-defaults.ts';
import { policyDomains } from '../build/sending-domains.ts';
import {
  adminService,
  configMap,
  FINGERPRINT_KEY,
  headlessService,
  horizontalPodAutoscaler,
  internalSecret,
  podDisruptionBudget,
  serviceMonitor,
  smtpService,
  statefulSet,
} from '../build/workload.ts';
import { toKubeApiError } from '../kube/api-error.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { RELAY_POLICIES, splitKey } from '../kube/resources.ts';
import type { UsageSummaries } from '../usage/summaries.ts';
import { OPERATOR_VERSION } from '../version.ts';
import { applyIfChanged } from './applied-hash.ts';
import { type ConditionInput, findCondition, type LiveCondition, mergeConditions } from './conditions.ts';
import {
  DEFAULT_DELETION_DRAIN_MS,
  drainVerdict,
  podQueueTargets,
  QUEUED_MAIL_FINALIZER,
  type QueueSource,
} from './deletion.ts';
import type { HashPool } from './hash-pool.ts';
import {
  type Lookup,
  readPolicySecrets,
  type SecretObject,
  secretValue,
  userInputs,
  usersOfPolicy,
} from './policy-inputs.ts';
import { type PolicyFacts, policyStatus, type StatefulSetState } from './policy-status.ts';
import { policyNotFound, SmtpUserStatusUpdater } from './smtp-user.ts';
import {
  claimsToExpand,
  expandClaim,
  type SpoolTemplateHolder,
  spoolChange,
  withSpoolSize,
} from './spool-resize.ts';
import { StatusWriter } from './status-writer.ts';
import { notSelected, selectUsers } from './user-selection.ts';
import { UserShards } from './user-shards.ts';

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

interface StatefulSetObject extends KubeObject {
  spec?: { replicas?: number };
  status?: Omit<StatefulSetState, 'generation'>;
}

/** Holds spec.replicas between the operator letting go of it and the HPA's first scale. */
export const REPLICAS_HANDOVER_MANAGER = 'sluice-operator-replicas-handover';

/** Whether `manager`'s server-side apply holds the StatefulSet's spec.replicas. */
function appliesReplicas(live: KubeObject, manager: string): boolean {
  const entries =
    (
      live.metadata as {
        managedFields?: Array<{ manager?: string; operation?: string; fieldsV1?: Record<string, unknown> }>;
      }
    ).managedFields ?? [];
  return entries.some((e) => {
    const spec = e.fieldsV1?.['f:spec'] as Record<string, unknown> | undefined;
    return e.manager === manager && e.operation === 'Apply' && spec?.['f:replicas'] !== undefined;
  });
}

export interface ReconcileLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface RelayPolicyReconcilerOptions {
  client: KubeClient;
  policies: Lookup<RelayPolicy>;
  users: Lookup<SmtpUser>;
  /** SendingDomains: their keys that DNS serves sign, their users may send as them */
  domains?: Lookup<SendingDomain>;
  secrets: Lookup<SecretObject>;
  /** The Secrets the operator owns (users shards, internal), from a cache */
  owned: Lookup<SecretObject>;
  /** Where plain passwords are hashed, off the reconcile */
  hashes: HashPool;
  events: EventRecorder;
  log?: ReconcileLogger;
  now?: () => number;
  /** A new random secret (handoff password, admin token) */
  randomSecret?: () => string;
  /** Usage and abuse from the relays, at a bounded rate, for the SmtpUsers' status */
  usage?: UsageSummaries;
  /** The pod network and the relays' NetworkPolicy; default: private ranges, no NetworkPolicy */
  network?: NetworkSettings;
  /** The relay image and ServiceMonitor settings of the installation */
  relayDefaults?: RelayDefaults;
  /** Usage-only SmtpUser status writes a second (the usage write budget); default 20 */
  usageWritesPerSecond?: number;
  /** The relays' queues; with it a deleted policy waits for them (finalizer), without it not */
  queues?: QueueSource;
  /** How long a deleted policy waits for its queues; default 15 min */
  deletionDrainMs?: number;
  /** How often a deleted policy's queues are asked again; default 10 s */
  drainPollMs?: number;
}

export interface ReconcileOutcome {
  /** Objects applied or deleted (0 in steady state) */
  changed: number;
  statusWritten: boolean;
  /** Reconcile again after this long (a deleted policy waiting for its queues) */
  requeueAfterMs?: number;
}

function finalizersOf(obj: KubeObject): string[] {
  return (obj.metadata as { finalizers?: string[] }).finalizers ?? [];
}

const SERVICE_MONITOR_API = 'monitoring.coreos.com/v1';

export class RelayPolicyReconciler {
  readonly #o: RelayPolicyReconcilerOptions;
  readonly #status: StatusWriter;
  readonly #userStatus: SmtpUserStatusUpdater;
  readonly #shards: UserShards;
  readonly #now: () => number;
  readonly #random: () => string;
  #serviceMonitors: Promise<boolean> | undefined;

  constructor(options: RelayPolicyReconcilerOptions) {
    this.#o = options;
    this.#status = new StatusWriter(options.client, RELAY_POLICIES);
    this.#now = options.now ?? Date.now;
    this.#random = options.randomSecret ?? (() => randomBytes(32).toString('base64url'));
    this.#shards = new UserShards({ client: options.client, owned: options.owned, pool: options.hashes });
    this.#userStatus = new SmtpUserStatusUpdater({
      client: options.client,
      events: options.events,
      now: this.#now,
      ...(options.log ? { log: options.log } : {}),
      ...(options.usageWritesPerSecond !== undefined
        ? { usageWritesPerSecond: options.usageWritesPerSecond }
        : {}),
    });
  }

  async reconcile(key: string): Promise<ReconcileOutcome> {
    const { namespace, name } = splitKey(key);
    const cached = this.#o.policies.get(namespace, name);
    const users = usersOfPolicy(this.#o.users.list(), namespace, name);
    if (cached?.metadata.deletionTimestamp && finalizersOf(cached).includes(QUEUED_MAIL_FINALIZER)) {
      return this.#finishDeletion(cached);
    }
    if (!cached || cached.metadata.deletionTimestamp) {
      this.#o.usage?.forget(key);
      if (cached?.metadata.uid) this.#shards.forget(cached.metadata.uid, key);
      await this.#userStatus.update(
        users.map((user) => ({ user, outcome: policyNotFound(name, namespace) })),
      );
      return { changed: 0, statusWritten: false };
    }
    const policy = withPolicyDefaults(cached);
    const { client } = this.#o;
    if (this.#o.queues && !finalizersOf(cached).includes(QUEUED_MAIL_FINALIZER)) {
      await this.#setFinalizers(cached, [...finalizersOf(cached), QUEUED_MAIL_FINALIZER]);
    }
    // users that name the policy but that its userSelector leaves out are told so, nothing more
    const { selected, unselected } = selectUsers(policy, users);
    const n = names(policy);
    const secrets = readPolicySecrets(policy, this.#o.secrets);
    const network = this.#o.network ?? DEFAULT_NETWORK_SETTINGS;
    const domains = policyDomains(
      this.#o.domains?.list() ?? [],
      this.#o.owned,
      namespace,
      name,
      policy.spec.sendingDomains?.defaultSigner,
    );
    const defaults = this.#o.relayDefaults ?? DEFAULT_RELAY_DEFAULTS;

    let config: RelayConfig | undefined;
    let configError: string | undefined;
    try {
      config = buildRelayConfig(policy, {
        ...(secrets.smarthostUsername ? { smarthostUsername: secrets.smarthostUsername } : {}),
        podNetworks: network.podNetworks,
        dkimKeys: domains.keys,
        ...(domains.defaultSigner ? { dkimDefaultSigner: domains.defaultSigner } : {}),
        senderDomains: domains.senders,
      });
    } catch (err: unknown) {
      if (!(err instanceof ConfigError)) throw err;
      configError = err.problems.join('; ');
    }

    // the internal secrets are generated once and kept
    const liveInternal = await client.get<SecretObject>('v1', 'Secret', namespace, n.internalSecret);
    const handoffPassword = secretValue(liveInternal, 'handoff-password') || this.#random();
    const adminToken = secretValue(liveInternal, 'admin-token') || this.#random();
    const fingerprintKey = secretValue(liveInternal, FINGERPRINT_KEY) || this.#random();

    // each owned object is applied on its own: one the API server refuses is reported in
    // status (Degraded, ApplyFailed) and retried, and does not hold back the others
    let changed = 0;
    const failures: Array<{ reason: string; message: string }> = [];
    const attempt = async <T>(what: string, step: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await step();
      } catch (err: unknown) {
        const e = toKubeApiError(err);
        // no answer at all: the status cannot be written either; retry the whole reconcile
        if (e.status === 0) throw e;
        failures.push({ reason: 'ApplyFailed', message: `${what}: ${e.message}` });
        this.#o.log?.warn({ relayPolicy: key, object: what, err: e.message }, 'apply failed');
        return undefined;
      }
    };
    const apply = <T extends KubeObject>(desired: KubeObject, live?: T | null): Promise<T | undefined> =>
      attempt(`${desired.kind} ${desired.metadata.name}`, async () => {
        const result = await applyIfChanged<T>(client, desired, live);
        if (result.applied) changed++;
        return result.object;
      });
    const deleteOwned = (apiVersion: string, kind: string, name: string) =>
      attempt(`${kind} ${name}`, async () => {
        if (await this.#deleteOwned(policy, apiVersion, kind, name)) changed++;
      });
    await apply(
      internalSecret(policy, handoffPassword, adminToken, fingerprintKey) as KubeObject,
      liveInternal ?? null,
    );
    const shards = await this.#shards.reconcile(
      policy,
      userInputs(selected, this.#o.secrets),
      handoffPassword,
      fingerprintKey,
    );
    changed += shards.changed;
    const built = shards.evaluated;

    let sts: StatefulSetObject | undefined;
    if (config) {
      await apply(configMap(policy, stringify(config, { lineWidth: 0 })) as KubeObject);
      sts = await this.#applyStatefulSet(
        policy,
        statefulSet(
          policy,
          restartHash(config, secrets.tlsVersion),
          shards.set,
          domains.mounts,
          defaults,
        ) as KubeObject,
        { apply, attempt, failures },
      );
      await apply(smtpService(policy) as KubeObject);
      await apply(adminService(policy) as KubeObject);
      await apply(headlessService(policy) as KubeObject);
      await apply(podDisruptionBudget(policy) as KubeObject);
      const hpa = horizontalPodAutoscaler(policy);
      if (hpa) await apply(hpa as KubeObject);
      else await deleteOwned('autoscaling/v2', 'HorizontalPodAutoscaler', n.hpa);
      if (await this.#servesServiceMonitors())
        await apply(serviceMonitor(policy, defaults.serviceMonitor) as unknown as KubeObject);
      if (network.relayNetworkPolicy) {
        await apply(relayNetworkPolicy(policy, network.relayNetworkPolicy) as unknown as KubeObject);
      } else {
        await deleteOwned('networking.k8s.io/v1', 'NetworkPolicy', n.networkPolicy);
      }
    }
    // a StatefulSet that was not applied (no valid config, or refused) is reported as it stands
    sts ??= await client.get<StatefulSetObject>('apps/v1', 'StatefulSet', namespace, n.statefulSet);

    changed += await this.#shards.cleanup(policy, shards.set, rolledOut(sts));

    const outcomes = new Map(built.outcomes.map((o) => [o.name, o]));
    const { autoscaling } = policy.spec;
    const facts: PolicyFacts = {
      generation: policy.metadata.generation ?? 0,
      desiredReplicas: autoscaling.enabled
        ? (sts?.spec?.replicas ?? autoscaling.minReplicas)
        : policy.spec.replicas,
      multiplePods: autoscaling.enabled ? autoscaling.maxReplicas > 1 : policy.spec.replicas > 1,
      sharedState: policy.spec.redis !== undefined,
      ...(sts ? { statefulSet: { ...sts.status, generation: sts.metadata.generation } } : {}),
      ...(configError ? { configError } : {}),
      applyFailures: failures,
      missingSecrets: secrets.missing,
      rejectedUsers: built.outcomes.filter((o) => !o.ok).map((o) => ({ name: o.name, reason: o.reason })),
      userCount: selected.length,
      selector: selectorString(policy),
      versions: { operator: OPERATOR_VERSION, relayImage: relayImageOf(policy, defaults) },
    };
    const statusWritten = await this.#writeStatus(cached, facts);

    const usage = this.#o.usage?.get(key, {
      namespace,
      policy: name,
      url: `http://${n.adminService}.${namespace}.svc:${ADMIN_PORT}`,
      token: adminToken,
    });
    // a user whose password is still being hashed keeps its status until it is written
    const leftOut = unselected.length > 0 ? notSelected(policy) : undefined;
    await this.#userStatus.update(
      [
        ...selected.flatMap((user) => {
          const outcome = outcomes.get(user.metadata.name);
          return outcome ? [{ user, outcome }] : [];
        }),
        ...(leftOut ? unselected.map((user) => ({ user, outcome: leftOut })) : []),
      ],
      usage,
    );
    if (changed > 0) this.#o.log?.info({ relayPolicy: key, changed }, 'applied changes');
    // the status says what failed; the error makes the work queue retry with backoff
    if (failures.length > 0)
      throw new ApplyFailedError(
        key,
        failures.map((f) => f.message),
      );
    return { changed, statusWritten };
  }

  /** Usage-only status writes done, and waiting for the budget. */
  get usageWrites(): { written: number; backlog: number } {
    return this.#userStatus.usageWrites;
  }

  /** Stops writes that run beside the reconciles (usage), when leadership is lost. */
  stop(): void {
    this.#userStatus.stop();
  }

  /** Forgets what was remembered about a deleted object (its uid). */
  forget(uid: string): void {
    this.#status.forget(uid);
    this.#userStatus.forget(uid);
  }

  async #writeStatus(cached: RelayPolicy, facts: PolicyFacts): Promise<boolean> {
    const live = { ...cached, status: cached.status as Record<string, unknown> | undefined };
    const current = this.#status.current(live) as { conditions?: LiveCondition[] } | undefined;
    const status = policyStatus(facts, current?.conditions, new Date(this.#now()).toISOString());
    const wrote = await this.#status.write(live, status);
    if (!wrote) return false;
    const before = findCondition(current?.conditions, 'Degraded');
    const after = findCondition(status.conditions, 'Degraded');
    if (after?.status === 'True' && (before?.status !== 'True' || before.reason !== after.reason)) {
      await this.#o.events.record(cached, 'Warning', after.reason ?? 'Degraded', after.message ?? '');
    }
    return true;
  }

  /**
   * Applies the StatefulSet, or, when its spool template changed (which the API server
   * does not allow in place), expands the spool PVCs and deletes the StatefulSet leaving
   * its pods running; its delete event brings the next reconcile, which creates it anew.
   */
  async #applyStatefulSet(
    policy: RelayPolicy,
    desired: KubeObject,
    steps: {
      apply: <T extends KubeObject>(desired: KubeObject, live?: T | null) => Promise<T | undefined>;
      attempt: <T>(what: string, step: () => Promise<T>) => Promise<T | undefined>;
      failures: Array<{ reason: string; message: string }>;
    },
  ): Promise<StatefulSetObject | undefined> {
    const { client } = this.#o;
    const { namespace = '' } = policy.metadata;
    const { name } = desired.metadata;
    const live = await client.get<StatefulSetObject & SpoolTemplateHolder>(
      'apps/v1',
      'StatefulSet',
      namespace,
      name,
    );
    // the old one is still being deleted (its pods being orphaned): created again once it is gone
    if (live?.metadata.deletionTimestamp) return live;
    const change = spoolChange(live, desired as SpoolTemplateHolder);
    if (change.type === 'none') {
      const handed = await this.#handReplicasToHpa(policy, desired, live, steps.attempt);
      return handed ? steps.apply<StatefulSetObject>(handed, live ?? null) : live;
    }
    if (change.type === 'refused') {
      steps.failures.push({
        reason: 'SpoolChangeRefused',
        message: `StatefulSet ${name}: ${change.message}`,
      });
      return live;
    }
    const claims = await steps.attempt('PersistentVolumeClaims', () =>
      claimsToExpand(client, policy, change.to),
    );
    if (!claims) return live;
    const refused: string[] = [];
    for (const claim of claims) {
      try {
        await expandClaim(client, claim, change.to);
      } catch (err: unknown) {
        const e = toKubeApiError(err);
        if (e.status === 0) throw e;
        refused.push(`PersistentVolumeClaim ${claim.metadata.name}: ${e.message}`);
      }
    }
    if (refused.length > 0) {
      steps.failures.push({
        reason: 'SpoolExpansionFailed',
        message: `spec.spool.size ${change.from} → ${change.to}: ${refused.join('; ')}; the StatefulSet keeps ${change.from} until its volumes can grow or the size is set back`,
      });
      // everything else in the StatefulSet (replicas, image, pod template) still applies
      const kept = withSpoolSize(desired as SpoolTemplateHolder, change.from);
      const handed = await this.#handReplicasToHpa(policy, kept, live, steps.attempt);
      return handed ? steps.apply<StatefulSetObject>(handed, live ?? null) : live;
    }
    await steps.attempt(`StatefulSet ${name}`, () =>
      client.delete('apps/v1', 'StatefulSet', namespace, name, {
        propagationPolicy: 'Orphan',
        ...(live?.metadata.uid ? { uid: live.metadata.uid } : {}),
      }),
    );
    this.#o.log?.info(
      { relayPolicy: `${namespace}/${policy.metadata.name}`, from: change.from, to: change.to },
      'spool volumes expanded; replacing the StatefulSet, its pods keep running',
    );
    return live;
  }

  /**
   * With autoscaling on, the HPA owns spec.replicas and the operator's StatefulSet leaves it
   * out. Leaving out a field the operator applied would remove it (back to 1 pod), so, as
   * the Kubernetes docs advise for handing replicas to an HPA, another field manager first
   * applies the current count (within min and max), then the operator lets go. A new
   * StatefulSet starts at the HPA's last wish or the minimum. Returns the StatefulSet to
   * apply, or undefined when the hand-over could not be written.
   */
  async #handReplicasToHpa(
    policy: RelayPolicy,
    desired: KubeObject,
    live: StatefulSetObject | undefined,
    attempt: <T>(what: string, step: () => Promise<T>) => Promise<T | undefined>,
  ): Promise<KubeObject | undefined> {
    const { autoscaling } = policy.spec;
    if (!autoscaling.enabled) return desired;
    const { client } = this.#o;
    const { namespace = '' } = policy.metadata;
    const { name } = desired.metadata;
    const within = (n: number) => Math.min(Math.max(n, autoscaling.minReplicas), autoscaling.maxReplicas);
    if (!live) {
      const hpa = await client.get<KubeObject & { status?: { desiredReplicas?: number } }>(
        'autoscaling/v2',
        'HorizontalPodAutoscaler',
        namespace,
        names(policy).hpa,
      );
      const spec = (desired as { spec?: Record<string, unknown> }).spec ?? {};
      const replicas = within(hpa?.status?.desiredReplicas ?? autoscaling.minReplicas);
      return { ...desired, spec: { ...spec, replicas } } as KubeObject;
    }
    if (!appliesReplicas(live, client.fieldManager)) return desired;
    const replicas = within(live.spec?.replicas ?? autoscaling.minReplicas);
    const handed = await attempt(`StatefulSet ${name}`, () =>
      client.apply(
        {
          apiVersion: 'apps/v1',
          kind: 'StatefulSet',
          metadata: { name, namespace },
          spec: { replicas },
        } as KubeObject,
        { fieldManager: REPLICAS_HANDOVER_MANAGER },
      ),
    );
    return handed ? desired : undefined;
  }

  /** A deleted policy: waits for its relays' queues, then lets it go (see deletion.ts). */
  async #finishDeletion(cached: RelayPolicy): Promise<ReconcileOutcome> {
    const { client } = this.#o;
    const policy = withPolicyDefaults(cached);
    const { namespace = '' } = policy.metadata;
    const n = names(policy);
    const [sts, internal] = await Promise.all([
      client.get<StatefulSetObject>('apps/v1', 'StatefulSet', namespace, n.statefulSet),
      client.get<SecretObject>('v1', 'Secret', namespace, n.internalSecret),
    ]);
    const pods = sts?.status?.replicas ?? 0;
    const token = secretValue(internal, 'admin-token') ?? '';
    const queues = this.#o.queues;
    const counts = await Promise.all(
      podQueueTargets(policy, pods, token).map((t) => queues?.count(t).catch(() => undefined)),
    );
    const deadline =
      Date.parse(cached.metadata.deletionTimestamp ?? '') +
      (this.#o.deletionDrainMs ?? DEFAULT_DELETION_DRAIN_MS);
    const verdict = drainVerdict(counts, this.#now(), deadline);
    if (!verdict.done) {
      const live = { ...cached, status: cached.status as Record<string, unknown> | undefined };
      const previous = (this.#status.current(live) as { conditions?: LiveCondition[] } | undefined)
        ?.conditions;
      const ready = {
        type: 'Ready' as const,
        status: 'False' as const,
        reason: verdict.reason,
        message: verdict.message,
        observedGeneration: policy.metadata.generation ?? 0,
      };
      const others = (previous ?? []).filter((c) => c.type !== 'Ready') as ConditionInput[];
      const conditions = mergeConditions(previous, [ready, ...others], new Date(this.#now()).toISOString());
      const statusWritten = await this.#status.write(live, { conditions });
      return { changed: 0, statusWritten, requeueAfterMs: this.#o.drainPollMs ?? 10_000 };
    }
    await this.#o.events.record(
      cached,
      verdict.drained ? 'Normal' : 'Warning',
      verdict.reason,
      verdict.message,
      'Delete',
    );
    await this.#setFinalizers(
      cached,
      finalizersOf(cached).filter((f) => f !== QUEUED_MAIL_FINALIZER),
    );
    this.#o.log?.info(
      { relayPolicy: `${namespace}/${policy.metadata.name}`, reason: verdict.reason },
      verdict.message,
    );
    return { changed: 1, statusWritten: false };
  }

  /** Sets the policy's finalizers; fails with Conflict when it changed since it was read. */
  async #setFinalizers(policy: RelayPolicy, finalizers: string[]): Promise<void> {
    await this.#o.client.mergePatch(policy, {
      metadata: { finalizers, resourceVersion: policy.metadata.resourceVersion },
    });
  }

  /** Deletes an object this policy owns (e.g. the HPA once autoscaling is off). */
  async #deleteOwned(policy: RelayPolicy, apiVersion: string, kind: string, name: string): Promise<boolean> {
    const live = await this.#o.client.get(apiVersion, kind, policy.metadata.namespace, name);
    const owned = live?.metadata.ownerReferences?.some((r) => r.uid === policy.metadata.uid);
    if (!live || !owned) return false;
    return this.#o.client.delete(apiVersion, kind, policy.metadata.namespace, name);
  }

  /** Whether the cluster has the ServiceMonitor API (asked once; asked again after a failure). */
  #servesServiceMonitors(): Promise<boolean> {
    this.#serviceMonitors ??= this.#o.client.servesApi(SERVICE_MONITOR_API).catch((err: unknown) => {
      this.#serviceMonitors = undefined;
      throw err;
    });
    return this.#serviceMonitors;
  }
}

/** Whether every pod runs the StatefulSet's current template (then a users set it no longer mounts can go). */
function rolledOut(sts: StatefulSetObject | undefined): boolean {
  const status = sts?.status;
  if (!sts || !status) return false;
  return (
    status.observedGeneration === sts.metadata.generation &&
    status.currentRevision !== undefined &&
    status.currentRevision === status.updateRevision &&
    (status.updatedReplicas ?? 0) === (status.replicas ?? 0)
  );
}
