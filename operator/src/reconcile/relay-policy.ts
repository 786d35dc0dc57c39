// The reconcile of one RelayPolicy: from the policy, its SmtpUsers and the Secrets they
// name, apply the ConfigMap, the users and internal Secrets, the StatefulSet, Services,
// PDB, HPA and ServiceMonitor (each only when it changed), then write the status of the
// policy and of its users once. Idempotent: run twice, the second run writes nothing.
// Owned objects carry owner references; deleting the policy leaves them to the garbage
// collector, so a policy that is gone (NotFound) only updates its users' status.
//
// This file orders the steps; each lives beside it: applying and recording failures
// (apply-steps.ts), the users shards (user-shards.ts), the StatefulSet with its spool
// resize and replicas hand-over (statefulset-apply.ts), the queued-mail finalizer
// (policy-finalizer.ts), the statuses (policy-status.ts, smtp-user.ts).
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
import type { Outcome, UserOutcome } from '../build/users.ts';
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
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { RELAY_POLICIES, splitKey } from '../kube/resources.ts';
import type { UsageSummaries } from '../usage/summaries.ts';
import { OPERATOR_VERSION } from '../version.ts';
import { ApplySteps, type ReconcileLogger } from './apply-steps.ts';
import { findCondition, type LiveCondition } from './conditions.ts';
import { QUEUED_MAIL_FINALIZER, type QueueSource } from './deletion.ts';
import { cleanupDkimShards, writeDkimShards } from './dkim-shards.ts';
import type { HashPool } from './hash-pool.ts';
import { finalizersOf, finishDeletion, setFinalizers } from './policy-finalizer.ts';
import {
  type Lookup,
  readPolicySecrets,
  type SecretObject,
  secretValue,
  userInputs,
  usersOfPolicy,
} from './policy-inputs.ts';
import { type PolicyFacts, policyStatus } from './policy-status.ts';
import { policyNotFound, SmtpUserStatusUpdater, type UserRef, userRef } from './smtp-user.ts';
import { applyStatefulSet, rolledOut, type StatefulSetObject } from './statefulset-apply.ts';
import { StatusWriter } from './status-writer.ts';
import { notSelected, selectUsers } from './user-selection.ts';
import { UserShards } from './user-shards.ts';

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

const SERVICE_MONITOR_API = 'monitoring.coreos.com/v1';

export class RelayPolicyReconciler {
  readonly #o: RelayPolicyReconcilerOptions;
  readonly #status: StatusWriter;
  readonly #userStatus: SmtpUserStatusUpdater;
  readonly #lookupUser = (namespace: string, name: string) => this.#o.users.get(namespace, name);
  readonly #shards: UserShards;
  readonly #now: () => number;
  readonly #random: () => string;
  /**
   * Internal secrets made for a policy whose internal Secret has not been seen to hold
   * them yet (by policy uid): a retry after a failed write uses the same ones, so the
   * plain passwords are not hashed again under a new fingerprint key.
   */
  readonly #unsaved = new Map<string, Record<string, string>>();
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
    if (cached?.metadata.deletionTimestamp && finalizersOf(cached).includes(QUEUED_MAIL_FINALIZER)) {
      return finishDeletion(
        {
          client: this.#o.client,
          status: this.#status,
          events: this.#o.events,
          queues: this.#o.queues,
          now: this.#now,
          ...(this.#o.deletionDrainMs !== undefined ? { deletionDrainMs: this.#o.deletionDrainMs } : {}),
          ...(this.#o.drainPollMs !== undefined ? { drainPollMs: this.#o.drainPollMs } : {}),
          ...(this.#o.log ? { log: this.#o.log } : {}),
        },
        cached,
      );
    }
    if (!cached || cached.metadata.deletionTimestamp) {
      this.#o.usage?.forget(key);
      if (cached?.metadata.uid) this.#shards.forget(cached.metadata.uid, key);
      if (cached?.metadata.uid) this.#unsaved.delete(cached.metadata.uid);
      const outcome = policyNotFound(name, namespace);
      await this.#userStatus.update(
        usersOfPolicy(this.#o.users.list(), namespace, name).map((user) => ({
          user: userRef(user),
          outcome,
        })),
        this.#lookupUser,
      );
      return { changed: 0, statusWritten: false };
    }
    const policy = withPolicyDefaults(cached);
    const { client } = this.#o;
    if (this.#o.queues && !finalizersOf(cached).includes(QUEUED_MAIL_FINALIZER)) {
      await setFinalizers(client, cached, [...finalizersOf(cached), QUEUED_MAIL_FINALIZER]);
    }
    // users that name the policy but that its userSelector leaves out are told so, nothing more
    // a holder, emptied before the status pass (below) so that the pass keeps no user objects
    const users = selectUsers(policy, usersOfPolicy(this.#o.users.list(), namespace, name));
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
    const uid = policy.metadata.uid ?? key;
    const unsaved = this.#unsaved.get(uid) ?? {};
    const internal = (name: string) => {
      const live = secretValue(liveInternal, name);
      if (live) return live;
      unsaved[name] ??= this.#random();
      return unsaved[name];
    };
    const handoffPassword = internal('handoff-password');
    const adminToken = internal('admin-token');
    const fingerprintKey = internal(FINGERPRINT_KEY);
    // kept until a later reconcile reads them back from the Secret
    if (Object.keys(unsaved).length > 0) this.#unsaved.set(uid, unsaved);
    else this.#unsaved.delete(uid);

    // each owned object is applied on its own (see apply-steps.ts)
    const steps = new ApplySteps(client, policy, this.#o.log);
    const apply = (desired: KubeObject, live?: KubeObject | null) => steps.apply(desired, live);
    await apply(
      internalSecret(policy, handoffPassword, adminToken, fingerprintKey) as KubeObject,
      liveInternal ?? null,
    );
    const shards = await this.#shards.reconcile(
      policy,
      userInputs(users.selected, this.#o.secrets),
      handoffPassword,
      fingerprintKey,
    );
    steps.changed += shards.changed;
    // the key shards are written before the config that names their files
    const dkimShards = await writeDkimShards(policy, domains.files, this.#o.owned, (desired, live) =>
      apply(desired, live),
    );

    let sts: StatefulSetObject | undefined;
    if (config) {
      await apply(configMap(policy, stringify(config, { lineWidth: 0 })) as KubeObject);
      sts = await applyStatefulSet(
        client,
        steps,
        policy,
        statefulSet(
          policy,
          restartHash(config, secrets.tlsVersion),
          shards.set,
          dkimShards,
          defaults,
        ) as KubeObject,
        this.#o.log,
      );
      await apply(smtpService(policy) as KubeObject);
      await apply(adminService(policy) as KubeObject);
      await apply(headlessService(policy) as KubeObject);
      await apply(podDisruptionBudget(policy) as KubeObject);
      const hpa = horizontalPodAutoscaler(policy);
      if (hpa) await apply(hpa as KubeObject);
      else await steps.deleteOwned('autoscaling/v2', 'HorizontalPodAutoscaler', n.hpa);
      if (await this.#servesServiceMonitors())
        await apply(serviceMonitor(policy, defaults.serviceMonitor) as unknown as KubeObject);
      if (network.relayNetworkPolicy) {
        await apply(relayNetworkPolicy(policy, network.relayNetworkPolicy) as unknown as KubeObject);
      } else {
        await steps.deleteOwned('networking.k8s.io/v1', 'NetworkPolicy', n.networkPolicy);
      }
    }
    // a StatefulSet that was not applied (no valid config, or refused) is reported as it stands
    sts ??= await client.get<StatefulSetObject>('apps/v1', 'StatefulSet', namespace, n.statefulSet);

    steps.changed += await this.#shards.cleanup(policy, shards.set, rolledOut(sts));
    await cleanupDkimShards(policy, dkimShards, this.#o.owned, rolledOut(sts), (name) =>
      steps.deleteOwned('v1', 'Secret', name),
    );

    const { autoscaling } = policy.spec;
    const facts: PolicyFacts = {
      generation: policy.metadata.generation ?? 0,
      desiredReplicas: autoscaling.enabled
        ? (sts?.spec?.replicas ?? autoscaling.minReplicas)
        : policy.spec.replicas,
      multiplePods: autoscaling.enabled ? autoscaling.maxReplicas > 1 : policy.spec.replicas > 1,
      multipleWorkers: policy.spec.workers !== 1,
      sharedState: policy.spec.redis !== undefined,
      ...(sts ? { statefulSet: { ...sts.status, generation: sts.metadata.generation } } : {}),
      ...(configError ? { configError } : {}),
      applyFailures: steps.failures,
      missingSecrets: secrets.missing,
      rejectedUsers: shards.outcomes.filter((o) => !o.ok).map((o) => ({ name: o.name, reason: o.reason })),
      userCount: users.selected.length,
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
    const entries = statusEntries(users, shards.outcomes, notSelected(policy));
    // each status write brings a new version of its user through the watch: the old one goes
    users.selected = [];
    users.unselected = [];
    await this.#userStatus.update(entries, this.#lookupUser, usage);
    const { changed } = steps;
    if (changed > 0) this.#o.log?.info({ relayPolicy: key, changed }, 'applied changes');
    // the status says what failed; the error makes the work queue retry with backoff
    steps.throwIfFailed();
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

  /** A version of an SmtpUser reached the cache: a status written before it is in it. */
  userSeen(uid: string, resourceVersion: string | undefined): void {
    this.#userStatus.seen(uid, resourceVersion);
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

  /** Whether the cluster has the ServiceMonitor API (asked once; asked again after a failure). */
  #servesServiceMonitors(): Promise<boolean> {
    this.#serviceMonitors ??= this.#o.client.servesApi(SERVICE_MONITOR_API).catch((err: unknown) => {
      this.#serviceMonitors = undefined;
      throw err;
    });
    return this.#serviceMonitors;
  }
}

/** Each user's status entry: named by its metadata, with what became of it (selected) or NotSelected. */
function statusEntries(
  users: { selected: readonly SmtpUser[]; unselected: readonly SmtpUser[] },
  outcomes: readonly UserOutcome[],
  leftOut: Outcome,
): Array<{ user: UserRef; outcome: Outcome }> {
  const byName = new Map(outcomes.map((o) => [o.name, o]));
  const entries: Array<{ user: UserRef; outcome: Outcome }> = [];
  // a user whose password is still being hashed keeps its status until it is written
  for (const user of users.selected) {
    const outcome = byName.get(user.metadata.name);
    if (outcome) entries.push({ user: userRef(user), outcome });
  }
  for (const user of users.unselected) entries.push({ user: userRef(user), outcome: leftOut });
  return entries;
}
