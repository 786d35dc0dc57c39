// Wires watches to the work queue and the queue to the reconcile: RelayPolicy events
// queue the policy; SmtpUser events queue their policy; Secret events queue the policies
// that read the Secret (an index, kept from the caches) or own it; StatefulSet events
// queue their owner. N workers reconcile keys, forget them on success and requeue them
// with backoff on error; every key is queued again periodically (resync). With leader
// election, watches and workers run only while this replica leads.

import type { Tracer } from '@opentelemetry/api';
import type { RelayPolicy, SendingDomain, SmtpUser } from '../api/types.ts';
import { MANAGED_SELECTOR } from '../build/names.ts';
import type { NetworkSettings } from '../build/network-policy.ts';
import type { RelayDefaults } from '../build/relay-defaults.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { EventRecorder } from '../kube/events.ts';
import {
  apiListWatch,
  Informer,
  type InformerLogger,
  type ListWatch,
  type ListWatchScope,
} from '../kube/informer.ts';
import { InformerSet, type WatchedObjects } from '../kube/informer-set.ts';
import { LeaderElector, type LeaseStore } from '../kube/leader.ts';
import {
  CONFIG_MAPS,
  keyOf,
  RELAY_POLICIES,
  type ResourceType,
  SECRETS,
  SENDING_DOMAINS,
  SERVICES,
  SMTP_USERS,
  STATEFUL_SETS,
  splitKey,
} from '../kube/resources.ts';
import type { QueueSource } from '../reconcile/deletion.ts';
import { type DnsLookup, resolverLookup } from '../reconcile/dns-checks.ts';
import { HashPool } from '../reconcile/hash-pool.ts';
import { type SecretObject, secretsOfPolicy } from '../reconcile/policy-inputs.ts';
import { RelayPolicyReconciler } from '../reconcile/relay-policy.ts';
import { SendingDomainReconciler } from '../reconcile/sending-domain.ts';
import { compactShardSecret } from '../reconcile/user-shards.ts';
import type { UsageSource } from '../usage/relay-usage.ts';
import { DEFAULT_USAGE_INTERVAL_MS, UsageSummaries } from '../usage/summaries.ts';
import { operatorTracer, tracedReconcile } from './reconcile-span.ts';
import { ReferencedSecrets } from './referenced-secrets.ts';
import { SecretIndex } from './secret-index.ts';
import { compactSecretMeta, compactSmtpUser, StatusPool, StringPool } from './user-cache.ts';
import { WorkQueue, type WorkQueueOptions } from './work-queue.ts';

export interface ControllerLogger extends InformerLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

export interface ControllerMetrics {
  reconciled(kind: string, result: 'success' | 'error', seconds: number): void;
  leading(isLeader: boolean): void;
  /** A plain password was hashed (scrypt) for a users file. */
  passwordHashed?(): void;
}

export interface LeaderElectionOptions {
  /** Where the Lease is read and written; the controller's client by default. */
  leases?: LeaseStore;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewIntervalMs?: number;
  retryIntervalMs?: number;
  renewDeadlineMs?: number;
}

export interface ControllerOptions {
  client: KubeClient;
  /** Watch one namespace; all namespaces when absent. */
  namespace?: string;
  /** Watch these namespaces (one informer each, so namespaced RBAC suffices); overrides `namespace`. */
  namespaces?: readonly string[];
  /** Parallel reconciles; default 2. */
  workers?: number;
  /** Every policy is reconciled again this often; default 10 min. */
  resyncMs?: number;
  /** Informer stall detection; default 5 min. */
  stallMs?: number;
  queue?: WorkQueueOptions;
  leaderElection?: LeaderElectionOptions;
  log?: ControllerLogger;
  metrics?: ControllerMetrics;
  /** Where reconcile spans go; the global API's tracer (a no-op until startTracing) by default. */
  tracer?: Tracer;
  /** Usage and abuse of the SmtpUsers (the relays' admin API); without it status.usage stays unset. */
  usageSource?: UsageSource;
  /** Each policy's relays are asked at most this often; default 5 min. */
  usageIntervalMs?: number;
  /** The pod network and the relays' NetworkPolicy (see build/network-policy.ts). */
  network?: NetworkSettings;
  /** The relay image and ServiceMonitor settings of the installation (see build/relay-defaults.ts). */
  relayDefaults?: RelayDefaults;
  /** Usage-only SmtpUser status writes a second, across all policies (the usage write budget); default 20. */
  usageWritesPerSecond?: number;
  /** Passwords hashed at once, across all policies; default 2. */
  hashConcurrency?: number;
  /** The relays' queues: a deleted policy then waits until they are empty (or a deadline). */
  queueSource?: QueueSource;
  /** How long a deleted policy waits for its queues; default 15 min. */
  deletionDrainMs?: number;
  /** How often a deleted policy's queues are asked again; default 10 s. */
  drainPollMs?: number;
  /** Where SendingDomains' DNS records are looked up; the system's resolvers by default. */
  dns?: DnsLookup;
  /** SendingDomains' DNS is checked again this often; default 5 min. */
  dnsCheckIntervalMs?: number;
  /** The clock of DKIM key rotation (tests move it); Date.now by default. */
  now?: () => number;
  /** Where the informers list and watch; the API server by default. */
  listWatch?: <T extends KubeObject>(
    resource: ResourceType,
    scope: Omit<ListWatchScope, 'namespace'>,
  ) => ListWatch<T>;
}

const KIND = 'RelayPolicy';
/**
 * The owned Secrets' list page: users shards run to 768 KiB of data each (a third more
 * in base64), so 16 a page is at most about 16 MiB of response, not 500 shards' worth.
 */
const OWNED_SECRETS_PAGE = 16;
/** Work-queue keys of SendingDomains carry this prefix; bare keys are policies. */
const DOMAIN_KEY = 'SendingDomain:';

function ownerDomainKey(obj: KubeObject): string | undefined {
  const owner = obj.metadata.ownerReferences?.find((r) => r.kind === 'SendingDomain' && r.controller);
  return owner ? keyOf(obj.metadata.namespace, owner.name) : undefined;
}

function ownerPolicyKey(obj: KubeObject): string | undefined {
  const owner = obj.metadata.ownerReferences?.find((r) => r.kind === 'RelayPolicy' && r.controller);
  return owner ? keyOf(obj.metadata.namespace, owner.name) : undefined;
}

/** One term of leadership: informers, queue, workers. A new one starts each time. */
class Session {
  readonly policies: WatchedObjects<RelayPolicy>;
  readonly users: WatchedObjects<SmtpUser>;
  readonly domains: WatchedObjects<SendingDomain>;
  /** The Secrets the operator owns (users shards, internal), whole */
  readonly ownedSecrets: WatchedObjects<SecretObject>;
  /** Every Secret in scope, metadata only: which exist, at which version */
  readonly secretMeta: WatchedObjects<SecretObject>;
  readonly statefulSets: WatchedObjects<KubeObject>;
  /** Owned ConfigMaps and Services: a deleted or edited one is put back at once, not at the next resync. */
  readonly configMaps: WatchedObjects<KubeObject>;
  readonly services: WatchedObjects<KubeObject>;
  readonly queue: WorkQueue;
  readonly #index = new SecretIndex();
  readonly #referenced: ReferencedSecrets;
  readonly #hashes: HashPool;
  readonly #reconciler: RelayPolicyReconciler;
  readonly #domainReconciler: SendingDomainReconciler;
  readonly #o: ControllerOptions;
  readonly #workers: Promise<void>[] = [];
  #resync: NodeJS.Timeout | undefined;
  /** Ends this term's requests: after stop() nothing started in it reaches the API server. */
  readonly #fence = new AbortController();
  #stopped = false;
  #stop: () => void = () => {};
  readonly #stopSignal = new Promise<void>((resolve) => {
    this.#stop = resolve;
  });

  constructor(options: ControllerOptions) {
    const o = { ...options, client: options.client.fenced(this.#fence.signal) };
    this.#o = o;
    const namespaces = o.namespaces?.length ? o.namespaces : o.namespace ? [o.namespace] : [];
    const lw = (namespace: string | undefined) =>
      o.listWatch ??
      (<T extends KubeObject>(resource: ResourceType, scope: Omit<ListWatchScope, 'namespace'>) =>
        apiListWatch<T>(o.client, resource, {
          ...(namespace ? { namespace } : {}),
          ...scope,
        }));
    const one = <T extends KubeObject>(
      namespace: string | undefined,
      resource: ResourceType,
      scope: Omit<ListWatchScope, 'namespace'>,
      transform?: (object: T, previous: T | undefined) => T,
    ) =>
      new Informer<T>({
        listWatch: lw(namespace)<T>(resource, scope),
        name: `${resource.plural}${scope.metadataOnly ? ' (metadata)' : ''}${namespace ? ` in ${namespace}` : ''}`,
        ...(o.stallMs !== undefined ? { stallMs: o.stallMs } : {}),
        ...(o.log ? { log: o.log } : {}),
        ...(transform ? { transform } : {}),
      });
    const informer = <T extends KubeObject>(
      resource: ResourceType,
      scope: Omit<ListWatchScope, 'namespace'> = {},
      transform?: (object: T, previous: T | undefined) => T,
    ): WatchedObjects<T> =>
      namespaces.length > 1
        ? new InformerSet<T>(namespaces, (ns) => one<T>(ns, resource, scope, transform))
        : one<T>(namespaces[0], resource, scope, transform);
    this.policies = informer<RelayPolicy>(RELAY_POLICIES);
    const strings = new StringPool();
    const statuses = new StatusPool();
    this.users = informer<SmtpUser>(SMTP_USERS, {}, (u, previous) =>
      compactSmtpUser(u, strings, previous, statuses),
    );
    this.domains = informer<SendingDomain>(SENDING_DOMAINS);
    // a start lists every users shard (100,000 users: 128): a few a page, or one response
    // would hold them all beside their parsed copies
    this.ownedSecrets = informer<SecretObject>(
      SECRETS,
      { labelSelector: MANAGED_SELECTOR, pageSize: OWNED_SECRETS_PAGE },
      compactShardSecret,
    );
    this.secretMeta = informer<SecretObject>(SECRETS, { metadataOnly: true }, (s, previous) =>
      compactSecretMeta(s, strings, previous),
    );
    this.#referenced = new ReferencedSecrets({ client: o.client, meta: this.secretMeta });
    this.#hashes = new HashPool({
      ...(o.hashConcurrency !== undefined ? { concurrency: o.hashConcurrency } : {}),
      onReady: (key) => this.queue.add(key),
      ...(o.metrics?.passwordHashed ? { onHashed: () => o.metrics?.passwordHashed?.() } : {}),
    });
    this.statefulSets = informer<KubeObject>(STATEFUL_SETS, { labelSelector: MANAGED_SELECTOR });
    this.configMaps = informer<KubeObject>(CONFIG_MAPS, { labelSelector: MANAGED_SELECTOR });
    this.services = informer<KubeObject>(SERVICES, { labelSelector: MANAGED_SELECTOR });
    this.queue = new WorkQueue(o.queue);
    this.#reconciler = new RelayPolicyReconciler({
      client: o.client,
      policies: this.policies,
      users: this.users,
      domains: this.domains,
      secrets: this.#referenced,
      owned: this.ownedSecrets,
      hashes: this.#hashes,
      ...(o.usageWritesPerSecond !== undefined ? { usageWritesPerSecond: o.usageWritesPerSecond } : {}),
      events: new EventRecorder(o.client, o.log),
      ...(o.log ? { log: o.log } : {}),
      ...(o.network ? { network: o.network } : {}),
      ...(o.relayDefaults ? { relayDefaults: o.relayDefaults } : {}),
      ...(o.queueSource ? { queues: o.queueSource } : {}),
      ...(o.deletionDrainMs !== undefined ? { deletionDrainMs: o.deletionDrainMs } : {}),
      ...(o.drainPollMs !== undefined ? { drainPollMs: o.drainPollMs } : {}),
      ...(o.usageSource
        ? {
            usage: new UsageSummaries({
              source: o.usageSource,
              // a changed answer queues the policy, whose reconcile writes it
              onUpdate: (key) => this.queue.add(key),
              ...(o.usageIntervalMs !== undefined ? { intervalMs: o.usageIntervalMs } : {}),
              ...(o.log ? { log: o.log } : {}),
            }),
          }
        : {}),
    });
    this.#domainReconciler = new SendingDomainReconciler({
      client: o.client,
      domains: this.domains,
      policies: this.policies,
      owned: this.ownedSecrets,
      events: new EventRecorder(o.client, o.log),
      dns: o.dns ?? resolverLookup(),
      ...(o.now ? { now: o.now } : {}),
      ...(o.dnsCheckIntervalMs !== undefined ? { dnsCheckIntervalMs: o.dnsCheckIntervalMs } : {}),
      ...(o.log ? { log: o.log } : {}),
    });
    this.#wire();
  }

  #reindex(policyKey: string): void {
    const [namespace = '', name = ''] = policyKey.split('/');
    this.#release(this.#index.set(policyKey, secretsOfPolicy(this.policies.get(namespace, name), [])));
  }

  /** Forgets the data of Secrets no policy reads any more. */
  #release(secretKeys: readonly string[]): void {
    for (const key of secretKeys) this.#referenced.drop(key);
  }

  #wire(): void {
    const policyChanged = (p: RelayPolicy) => {
      const key = keyOf(p.metadata.namespace, p.metadata.name);
      this.#reindex(key);
      this.queue.add(key);
    };
    this.policies.on({
      add: policyChanged,
      update: policyChanged,
      delete: (p) => {
        policyChanged(p);
        if (p.metadata.uid) this.#reconciler.forget(p.metadata.uid);
      },
    });
    // 100,000 users name a few policies: one string per policy, not one per user in the index
    const policyKeys = new StringPool(10_000);
    const policyKeyOf = (u: SmtpUser) =>
      policyKeys.share(keyOf(u.metadata.namespace, u.spec?.policyRef?.name ?? ''));
    // the uid is a string the cached user holds already (the same one from version to version)
    const userKey = (u: SmtpUser) => u.metadata.uid ?? `user:${keyOf(u.metadata.namespace, u.metadata.name)}`;
    const userChanged = (u: SmtpUser, old?: SmtpUser) => {
      if (u.metadata.uid) this.#reconciler.userSeen(u.metadata.uid, u.metadata.resourceVersion);
      const secret = u.spec?.passwordSecretRef?.name;
      this.#release(
        this.#index.setOwner(userKey(u), policyKeyOf(u), secret ? [keyOf(u.metadata.namespace, secret)] : []),
      );
      for (const key of new Set([policyKeyOf(u), ...(old ? [policyKeyOf(old)] : [])])) this.queue.add(key);
    };
    this.users.on({
      add: (u) => userChanged(u),
      update: userChanged,
      delete: (u) => {
        this.#release(this.#index.deleteOwner(userKey(u)));
        this.queue.add(policyKeyOf(u));
        if (u.metadata.uid) this.#reconciler.forget(u.metadata.uid);
      },
    });
    // a referenced Secret changed: its data is read again before the policies that read it reconcile
    const secretChanged = (s: SecretObject) => {
      for (const key of this.#index.policiesFor(keyOf(s.metadata.namespace, s.metadata.name))) {
        this.queue.add(key);
      }
    };
    this.secretMeta.on({ add: secretChanged, update: secretChanged, delete: secretChanged });
    const domainChanged = (d: SendingDomain, old?: SendingDomain) => {
      this.queue.add(DOMAIN_KEY + keyOf(d.metadata.namespace, d.metadata.name));
      // the policy renders the domain's keys and users (and a duplicate's turn may come)
      for (const ref of new Set([d.spec?.policyRef?.name, old?.spec?.policyRef?.name])) {
        if (ref) this.queue.add(keyOf(d.metadata.namespace, ref));
      }
      // a domain claimed or given up: a SendingDomain naming the same one may now count, or not
      const claimChanged =
        !old || old.spec?.domain !== d.spec?.domain || old.spec?.policyRef?.name !== d.spec?.policyRef?.name;
      if (!claimChanged) return;
      for (const other of this.domains.list()) {
        if (
          other !== d &&
          other.metadata.namespace === d.metadata.namespace &&
          (other.spec?.domain === d.spec?.domain || other.spec?.domain === old?.spec?.domain)
        )
          this.queue.add(DOMAIN_KEY + keyOf(other.metadata.namespace, other.metadata.name));
      }
    };
    this.domains.on({
      add: (d) => domainChanged(d),
      update: domainChanged,
      delete: (d) => {
        domainChanged(d);
        if (d.metadata.uid) this.#domainReconciler.forget(d.metadata.uid);
      },
    });
    const ownedSecretChanged = (s: SecretObject) => {
      const owner = ownerPolicyKey(s);
      if (owner) this.queue.add(owner);
      const domain = ownerDomainKey(s);
      if (domain) {
        this.queue.add(DOMAIN_KEY + domain);
        const { namespace, name } = splitKey(domain);
        const ref = this.domains.get(namespace, name)?.spec?.policyRef?.name;
        if (ref) this.queue.add(keyOf(namespace, ref));
      }
    };
    this.ownedSecrets.on({ add: ownedSecretChanged, update: ownedSecretChanged, delete: ownedSecretChanged });
    const ownedChanged = (o: KubeObject) => {
      const owner = ownerPolicyKey(o);
      if (owner) this.queue.add(owner);
    };
    this.statefulSets.on({ add: ownedChanged, update: ownedChanged, delete: ownedChanged });
    // ConfigMaps and Services: their content is ours, so a deleted or hand-edited one is put back
    this.configMaps.on({ update: ownedChanged, delete: ownedChanged });
    this.services.on({ update: ownedChanged, delete: ownedChanged });
  }

  get informers(): WatchedObjects<KubeObject>[] {
    return [
      this.policies,
      this.users,
      this.domains,
      this.ownedSecrets,
      this.secretMeta,
      this.statefulSets,
      this.configMaps,
      this.services,
    ] as WatchedObjects<KubeObject>[];
  }

  get passwordsHashed(): number {
    return this.#hashes.hashed;
  }

  get secretReads(): number {
    return this.#referenced.reads;
  }

  hasSynced(): boolean {
    return this.informers.every((i) => i.hasSynced());
  }

  async start(): Promise<void> {
    if (this.#stopped) return;
    for (const i of this.informers) i.start();
    await Promise.race([Promise.all(this.informers.map((i) => i.synced())), this.#stopSignal]);
    if (this.#stopped) return;
    this.#o.log?.info({ policies: this.policies.list().length }, 'caches synced; reconciling');
    for (let w = 0; w < (this.#o.workers ?? 2); w++) this.#workers.push(this.#work());
    // with usage summaries, often enough that each policy's users get them once per interval
    const resyncMs = Math.min(
      this.#o.resyncMs ?? 600_000,
      this.#o.usageSource ? (this.#o.usageIntervalMs ?? DEFAULT_USAGE_INTERVAL_MS) : Number.POSITIVE_INFINITY,
    );
    this.#resync = setInterval(() => this.resync(), resyncMs);
    this.#resync.unref();
  }

  /** Queues every policy (and every policy key that users name). */
  resync(): void {
    for (const p of this.policies.list()) this.queue.add(keyOf(p.metadata.namespace, p.metadata.name));
    for (const u of this.users.list())
      this.queue.add(keyOf(u.metadata.namespace, u.spec?.policyRef?.name ?? ''));
    for (const d of this.domains.list())
      this.queue.add(DOMAIN_KEY + keyOf(d.metadata.namespace, d.metadata.name));
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const started = performance.now();
      const domainKey = key.startsWith(DOMAIN_KEY) ? key.slice(DOMAIN_KEY.length) : undefined;
      const kind = domainKey !== undefined ? 'SendingDomain' : KIND;
      try {
        const outcome = await tracedReconcile(
          this.#o.tracer ?? operatorTracer(),
          kind,
          domainKey ?? key,
          async () => {
            if (domainKey !== undefined) return this.#domainReconciler.reconcile(domainKey);
            await this.#referenced.ensure(this.#index.secretsFor(key));
            return this.#reconciler.reconcile(key);
          },
        );
        this.queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) this.queue.addAfter(key, outcome.requeueAfterMs);
        this.#o.metrics?.reconciled(kind, 'success', (performance.now() - started) / 1000);
      } catch (err: unknown) {
        const retryInMs = this.queue.addRateLimited(key);
        this.#o.metrics?.reconciled(kind, 'error', (performance.now() - started) / 1000);
        this.#o.log?.warn(
          {
            ...(domainKey !== undefined ? { sendingDomain: domainKey } : { relayPolicy: key }),
            err: err instanceof Error ? err.message : String(err),
            retryInMs,
          },
          'reconcile failed',
        );
      } finally {
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#fence.abort();
    this.#stop();
    clearInterval(this.#resync);
    this.queue.close();
    await Promise.all(this.#workers);
    this.#reconciler.stop();
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}

export class Controller {
  readonly #o: ControllerOptions;
  readonly #elector: LeaderElector | undefined;
  #session: Session | undefined;
  #transition: Promise<void> = Promise.resolve();

  constructor(options: ControllerOptions) {
    this.#o = options;
    const le = options.leaderElection;
    if (le) {
      this.#elector = new LeaderElector({
        ...le,
        leases: le.leases ?? options.client,
        onStartedLeading: () => {
          this.#o.metrics?.leading(true);
          this.#startWork();
        },
        onStoppedLeading: async () => {
          this.#o.metrics?.leading(false);
          await this.#stopWork();
        },
        ...(options.log ? { log: options.log } : {}),
      });
    }
  }

  start(): void {
    if (this.#elector) this.#elector.start();
    else {
      this.#o.metrics?.leading(true);
      this.#startWork();
    }
  }

  /** Stops the work, then (with leader election) releases the Lease. */
  async stop(): Promise<void> {
    if (this.#elector) await this.#elector.stop();
    else await this.#stopWork();
    this.#o.metrics?.leading(false);
  }

  /** Whether this replica does the work (always, without leader election). */
  get leading(): boolean {
    return this.#elector ? this.#elector.isLeader : this.#session !== undefined;
  }

  get queueDepth(): number {
    return this.#session?.queue.depth ?? 0;
  }

  /** Passwords hashed in this term of leadership (zero after a restart when nothing changed). */
  get passwordsHashed(): number {
    return this.#session?.passwordsHashed ?? 0;
  }

  /** Reads of referenced Secrets' data in this term (GETs and list pages). */
  get secretReads(): number {
    return this.#session?.secretReads ?? 0;
  }

  /** Ready: a leader whose caches are synced, or a standby that can reach the API server. */
  readiness(): { ok: boolean; detail: string } {
    if (this.#session) {
      const synced = this.#session.hasSynced();
      return { ok: synced, detail: synced ? 'leading; caches synced' : 'leading; caches syncing' };
    }
    if (this.#elector) {
      const healthy = this.#elector.healthy;
      return { ok: healthy, detail: healthy ? 'standby' : 'standby; cannot read the lease' };
    }
    return { ok: false, detail: 'not started' };
  }

  /** Queues every policy now (tests; the resync timer does this periodically). */
  resync(): void {
    this.#session?.resync();
  }

  #startWork(): void {
    if (this.#session) return;
    const session = new Session(this.#o);
    this.#session = session;
    // a new term starts only after the previous one has fully stopped
    this.#transition = this.#transition
      .then(() => session.start())
      .catch((err: unknown) => this.#o.log?.error({ err: String(err) }, 'could not start the controller'));
  }

  #stopWork(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session) {
      // stop at once: a start still waiting for its caches sees the stop and returns
      const stopped = session.stop();
      this.#transition = this.#transition.then(() => stopped);
    }
    return this.#transition;
  }
}
