// The relay as one object: SMTP listeners, spool, authenticator, metrics and the admin
// server, built from a validated config and users file. It knows nothing of where the
// config came from (a file, the operator's ConfigMap, a test); main.ts does.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { AbuseWatch } from './abuse/watch.ts';
import { registerAbuseApi } from './admin/abuse-api.ts';
import { registerQueueApi } from './admin/queue-api.ts';
import { startAdminServer } from './admin/server.ts';
import { registerSuppressionApi } from './admin/suppression-api.ts';
import { registerUsageApi } from './admin/usage-api.ts';
import { Authenticator } from './auth/authenticator.ts';
import { RESTART_FIELDS, type RelayConfig, type UserRecord, type UsersFile } from './config/schema.ts';
import { type SecretFile, SecretFiles } from './config/secret-files.ts';
import { createDsnEnqueuer } from './delivery/bounce.ts';
import { Shaper } from './delivery/shaping.ts';
import { SmtpTransport } from './delivery/smtp-transport.ts';
import type { Transport } from './delivery/types.ts';
import { type DkimKeys, loadDkimKeys, NO_DKIM_KEYS } from './dkim/keys.ts';
import { createDnsblChecker, type DnsblChecker, type DnsblObserver } from './dnsbl/checker.ts';
import { SluiceError } from './errors.ts';
import { bindAddress } from './net/bind-address.ts';
import { AbuseMetrics } from './observability/abuse-metrics.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { RelayMetrics } from './observability/metrics.ts';
import { OwnIpMetrics } from './observability/own-ip-metrics.ts';
import { ReputationMetrics } from './observability/reputation-metrics.ts';
import { relayTracer, type Tracer } from './observability/spans.ts';
import { OwnIpWatch } from './own-ip/watch.ts';
import { SharedChecks } from './policy/shared-checks.ts';
import { DeliveryManager, type DeliveryObserver } from './queue/delivery-manager.ts';
import { handOff } from './queue/handoff.ts';
import { QueueStore } from './queue/queue-store.ts';
import { ConnectionSlots } from './smtp/connection-slots.ts';
import { SmtpHandlers } from './smtp/handlers.ts';
import { SmtpListener } from './smtp/listener.ts';
import { RefusalRecorder } from './smtp/refusals.ts';
import type { RelayRuntime } from './smtp/runtime.ts';
import { reserveBytes, SpoolSpace } from './spool/free-space.ts';
import { Spool } from './spool/spool.ts';
import { createStateStore, type StateHealth } from './state/create-store.ts';
import type { StateStore } from './state/store.ts';
import { SuppressionList } from './suppression/suppression-list.ts';
import { type CertificatePair, loadCertificate } from './tls/certificate.ts';
import { UsageRecorder } from './usage/recorder.ts';
import { readUsageReport } from './usage/report.ts';

export interface StartRelayOptions {
  config: RelayConfig;
  users: UsersFile;
  logger?: Logger;
  /** Off only in benchmarks that measure the cost of durability. */
  fsync?: boolean;
  defaultMetrics?: boolean;
  /** Deliver queued mail (default true); tests of the SMTP front alone turn it off. */
  deliver?: boolean;
  /** Clock of usage buckets, abuse detection and rate limits; tests inject one. Default Date.now. */
  now?: () => number;
  /** Where spans go; the global API's tracer (a no-op until startTracing) by default. */
  tracer?: Tracer;
  /** The delivery queue's own limits (queue/delivery-manager.ts); benchmarks and tests set them. */
  queue?: { activeLimit?: number; scanSliceMs?: number };
  /**
   * One of several worker processes (workers/): the SMTP listeners bind with SO_REUSEPORT,
   * and every socket is the worker's own (exclusive), never one shared through the cluster
   * primary (which would make each worker's admin port 0 the same round-robin port).
   */
  clusterWorker?: boolean;
}

async function readSecretFile(path: string | undefined, field: string): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new SluiceError('SLUICE_ERR_CONFIG_READ', `${field}: cannot read ${path} (${code})`, {
      cause: err,
    });
  }
}

export class Relay implements RelayRuntime {
  readonly metrics: RelayMetrics;
  readonly reputationMetrics: ReputationMetrics;
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly spool: Spool;
  /** Free space on the spool's filesystem, sampled in the background. */
  readonly spoolSpace: SpoolSpace;
  readonly tracer: Tracer;
  readonly listeners: SmtpListener[] = [];
  #checks?: SharedChecks;
  #store?: StateStore;
  #stateHealth: StateHealth = { shared: false, detail: 'not started' };
  #config: RelayConfig;
  #dkim: DkimKeys = NO_DKIM_KEYS;
  #users: ReadonlyMap<string, UserRecord> = new Map();
  /** Listeners closing: new connections get 421. */
  #draining = false;
  /** Readiness off (beginDrain): new connections are still served. */
  #stopping = false;
  #admin?: FastifyInstance;
  #adminPort = 0;
  #deliver: boolean;
  readonly #queueOptions: StartRelayOptions['queue'];
  readonly #clusterWorker: boolean;
  #transport?: Transport;
  #delivery?: DeliveryManager;
  #queue?: QueueStore;
  readonly #now: () => number;
  #usage?: UsageRecorder;
  #abuse?: AbuseWatch;
  #ownIp?: OwnIpWatch;
  #suppression?: SuppressionList;
  #shaper?: Shaper;
  #secretFiles?: SecretFiles;

  private constructor(options: StartRelayOptions) {
    this.#config = options.config;
    this.logger = options.logger ?? createLogger({ level: options.config.log.level });
    this.metrics = new RelayMetrics({ defaultMetrics: options.defaultMetrics ?? true });
    this.reputationMetrics = new ReputationMetrics(this.metrics.registry);
    this.authenticator = new Authenticator({ cacheTtlMs: options.config.auth.cacheTtlSeconds * 1000 });
    this.spool = new Spool({
      dir: options.config.spoolDir,
      fsync: options.fsync ?? true,
      groupCommit: options.config.spool.groupCommit,
      onFileThreadError: (message) =>
        this.logger.error({ event: 'spool_error', detail: message }, 'spool file thread'),
    });
    this.spoolSpace = new SpoolSpace(options.config.spoolDir, {
      onError: (err) =>
        this.logger.warn(
          { event: 'spool_space_unknown', err: String(err) },
          "cannot read the spool filesystem's free space",
        ),
    });
    this.metrics.spoolSpaceSource = () => ({
      free: this.spoolSpace.sample?.freeBytes,
      reserve: reserveBytes(this.#config),
    });
    this.#deliver = options.deliver ?? true;
    this.#queueOptions = options.queue;
    this.#clusterWorker = options.clusterWorker ?? false;
    this.#now = options.now ?? Date.now;
    this.tracer = options.tracer ?? relayTracer();
    this.#setUsers(options.users);
  }

  /** The delivery manager (undefined when delivery is off). */
  get delivery(): DeliveryManager | undefined {
    return this.#delivery;
  }

  async #buildTransport(config: RelayConfig): Promise<Transport> {
    const smarthostPassword = await readSecretFile(
      config.delivery.smarthost?.passwordFile,
      'delivery.smarthost.passwordFile',
    );
    return new SmtpTransport({
      mode: config.delivery.mode,
      config: config.delivery,
      hostname: config.hostname,
      ...(smarthostPassword === undefined ? {} : { smarthostPassword }),
      ...(this.#shaper === undefined ? {} : { shaper: this.#shaper }),
      logger: this.logger,
      caFile: config.tls.trustedCaFile,
      sharedCache: this.#store,
      onMtaSts: (outcome, group) => this.metrics.deliveryMtaStsTotal.inc({ ...outcome, group }),
      onDane: (result, group) => this.metrics.deliveryDaneTotal.inc({ result, group }),
    });
  }

  #deliveryObserver(): DeliveryObserver {
    return {
      attempt: (result, seconds, detail) => {
        this.metrics.deliveryAttemptsTotal.inc({ result });
        this.metrics.deliveryDurationSeconds.observe({ result }, seconds);
        this.reputationMetrics.outcome(result, detail.class);
        this.#usage?.delivery(detail.user, result, detail.class);
        if (result === 'bounced') this.#suppressBounced(detail);
      },
      retryScheduled: () => this.metrics.deliveryRetriesTotal.inc(),
      bounceGenerated: (action) => this.metrics.dsnTotal.inc({ action }),
    };
  }

  /** A bounce of a class the policy names suppresses its recipient on every relay. */
  #suppressBounced(detail: { class: string; user: string; recipient: string; response: string }): void {
    const { recipient, user, response } = detail;
    const bounce = { class: detail.class, reply: response, user };
    this.#suppression?.bounced(recipient, bounce).catch((err: unknown) => {
      const error = err instanceof Error ? err.message : String(err);
      this.logger.warn(
        { event: 'suppression_failed', recipient, err: error },
        'cannot record the suppression of a recipient that bounced',
      );
    });
  }

  async #startDelivery(config: RelayConfig): Promise<void> {
    this.#queue = new QueueStore({
      spool: this.spool,
      committer: this.spool.committer,
      fsync: this.spool.fsync,
      logger: this.logger,
      observer: {
        quarantined: (reason) => this.metrics.queueQuarantinedTotal.inc({ reason }),
        recovered: (reason) => this.metrics.queueRecoveredTotal.inc({ reason }),
      },
    });
    if (!this.#deliver) return;
    this.#transport = await this.#buildTransport(config);
    const delivery = new DeliveryManager({
      spool: this.spool,
      queue: this.#queue,
      transport: () => this.#transport as Transport,
      config: () => this.#config,
      enqueueDsn: createDsnEnqueuer({ spool: this.spool, hostname: () => this.#config.hostname }),
      logger: this.logger,
      observer: this.#deliveryObserver(),
      tracer: this.tracer,
      ...this.#queueOptions,
    });
    this.#delivery = delivery;
    // the scan of the spool starts once the relay serves (#start)
    delivery.listen();
    this.metrics.queueSource = () => ({
      size: delivery.size,
      held: delivery.held,
      oldestReceivedAt: delivery.oldestReceivedAt(),
    });
  }

  /** The shared state, where the DMARC pre-check keeps DNS answers (once started). */
  get answerCache(): StateStore | undefined {
    return this.#store;
  }
  /** DNSBL, lockout and rate-limit checks (available once started). */
  get checks(): SharedChecks {
    if (!this.#checks) throw new Error('relay not started');
    return this.#checks;
  }

  #dnsblObserver(): DnsblObserver {
    return {
      lookup: (zone, result, tier, seconds) => {
        this.metrics.dnsblLookupsTotal.inc({ zone, result, tier });
        this.metrics.dnsblLookupSeconds.observe({ zone, tier }, seconds);
      },
      zoneDisabled: (zone) => this.metrics.dnsblZoneDisabledTotal.inc({ zone }),
    };
  }

  #dnsblFor(config: RelayConfig): DnsblChecker | undefined {
    const store = this.#store;
    return config.dnsbl.enabled && store
      ? createDnsblChecker(config.dnsbl, store, this.logger, this.#dnsblObserver())
      : undefined;
  }

  static async start(options: StartRelayOptions): Promise<Relay> {
    const relay = new Relay(options);
    await relay.#start();
    return relay;
  }

  get config(): RelayConfig {
    return this.#config;
  }
  get dkim(): DkimKeys {
    return this.#dkim;
  }
  get users(): ReadonlyMap<string, UserRecord> {
    return this.#users;
  }
  get draining(): boolean {
    return this.#draining;
  }
  get adminPort(): number {
    return this.#adminPort;
  }
  /** The bound port of each listener, by listener name. */
  get ports(): Record<string, number> {
    return Object.fromEntries(this.listeners.map((l) => [l.config.name, l.port]));
  }

  async #start(): Promise<void> {
    const config = this.#config;
    this.#dkim = await loadDkimKeys(config.dkim, 'config');
    await this.spool.init();
    await this.spoolSpace.start();
    const state = await createStateStore(config.state, this.logger);
    this.#store = state.store;
    this.#stateHealth = state.health;
    this.#checks = new SharedChecks({
      store: state.store,
      metrics: this.metrics,
      logger: this.logger,
      config: () => this.#config,
      now: this.#now,
    });
    this.#startWatches(state.store);
    this.metrics.stateShared.set(state.health.shared ? 1 : 0);
    state.onHealth((shared) => this.metrics.stateShared.set(shared ? 1 : 0));
    this.checks.dnsbl = this.#dnsblFor(config);
    const certificate = await this.#certificate(config);
    if (certificate.selfSigned) {
      this.logger.warn(
        { event: 'tls_self_signed' },
        'using a self-signed certificate; configure tls.certFile',
      );
    }
    await this.#startDelivery(config);
    this.#secretFiles = await this.#watchSecretFiles(config, state.setPassword);
    const adminToken = await readSecretFile(config.admin.tokenFile, 'admin.tokenFile');
    // the connection caps are per relay: all listeners share them
    const slots = new ConnectionSlots();
    // one recorder for every listener's refusals, stage replies and connection replies alike
    const refusals = new RefusalRecorder(this);
    for (const listenerConfig of config.listeners) {
      const handlers = new SmtpHandlers(this, listenerConfig.name, refusals);
      const listener = new SmtpListener({
        listener: { ...listenerConfig, address: await bindAddress(listenerConfig.address) },
        config,
        certificate,
        handlers,
        logger: this.logger,
        refusals,
        slots,
        reusePort: this.#clusterWorker,
      });
      await listener.listen();
      this.listeners.push(listener);
    }
    const admin = await startAdminServer({
      address: await bindAddress(config.admin.address),
      port: config.admin.port,
      registry: this.metrics.registry,
      exclusive: this.#clusterWorker,
      register: (server) => {
        if (adminToken && this.#delivery)
          registerQueueApi(server, { admin: this.#delivery, token: adminToken });
        if (adminToken) this.#registerUsageApis(server, adminToken);
      },
      checks: [
        {
          name: 'draining',
          check: () => {
            const stopping = this.#draining || this.#stopping;
            return { ok: !stopping, detail: this.#draining ? 'draining' : stopping ? 'stopping' : 'serving' };
          },
        },
        {
          name: 'listeners',
          check: () => ({
            ok: this.listeners.every((l) => l.port > 0),
            detail: this.listeners.map((l) => `${l.config.name}:${l.port}`).join(' '),
          }),
        },
        { name: 'users', check: () => ({ ok: true, detail: `${this.#users.size} users` }) },
        // the relay keeps serving on local state while Redis is down; the detail says so
        { name: 'state', check: () => ({ ok: true, detail: this.#stateHealth.detail }) },
        // a full disk refuses every message: new clients are better served by another pod
        { name: 'spool', check: () => this.#spoolReadiness() },
        // a listed egress address needs an SRE, not fewer pods: detail only
        { name: 'own_ip', check: () => ({ ok: true, detail: this.#ownIp?.detail ?? 'not started' }) },
      ],
    });
    this.#admin = admin.server;
    this.#adminPort = admin.port;
    // mail is taken from here on; what is already queued is found in the background
    this.#delivery?.startScan();
    this.logger.info(
      { event: 'started', ports: this.ports, adminPort: this.#adminPort, users: this.#users.size },
      'relay started',
    );
  }

  /** Redis and smarthost passwords and the trusted CA file, re-read when their files change (a rotated Secret). */
  #watchSecretFiles(
    config: RelayConfig,
    setRedisPassword: ((password: string) => void) | undefined,
  ): Promise<SecretFiles> {
    const files: SecretFile[] = [];
    const redisFile = config.state.redis?.passwordFile;
    if (redisFile && setRedisPassword) {
      files.push({ path: redisFile, field: 'state.redis.passwordFile', apply: setRedisPassword });
    }
    // a new transport reads the files again; the old one's pooled connections close
    const rebuildTransport = async () => {
      const transport = await this.#buildTransport(this.#config);
      const old = this.#transport;
      this.#transport = transport;
      void old?.close();
    };
    const smarthostFile = config.delivery.smarthost?.passwordFile;
    if (smarthostFile && this.#transport) {
      files.push({ path: smarthostFile, field: 'delivery.smarthost.passwordFile', apply: rebuildTransport });
    }
    // a CA bundle (a ConfigMap or Secret, say) updated in place reaches the next connection
    const caFile = config.tls.trustedCaFile;
    if (caFile && this.#transport) {
      files.push({
        path: caFile,
        field: 'tls.trustedCaFile',
        apply: rebuildTransport,
        what: 'CA certificates',
      });
    }
    return SecretFiles.watch(files, { logger: this.logger });
  }

  #certificate(config: RelayConfig): Promise<CertificatePair> {
    return loadCertificate({
      certFile: config.tls.certFile,
      keyFile: config.tls.keyFile,
      stateDir: config.stateDir ?? join(config.spoolDir, '..', 'state'),
      hostname: config.hostname,
    });
  }

  #setUsers(users: UsersFile | ReadonlyMap<string, UserRecord>): void {
    const table = users instanceof Map ? users : Authenticator.table((users as UsersFile).users);
    this.authenticator.setUsers(table);
    this.#users = table;
  }

  /**
   * Applies a reloaded config and users file to new and open sessions, without dropping any.
   * All or nothing: everything that can fail (the user table, the certificate, the
   * delivery transport, the DNSBL checker) is built first; if any of it throws, nothing
   * has changed and the previous config and users stay in force.
   */
  async apply(config: RelayConfig, users: UsersFile): Promise<void> {
    const table = Authenticator.table(users.users);
    const kept = { ...config };
    for (const field of RESTART_FIELDS) {
      if (JSON.stringify(config[field]) !== JSON.stringify(this.#config[field])) {
        this.logger.warn(
          { event: 'config_needs_restart', field },
          `${field} changes take effect after a restart`,
        );
        Object.assign(kept, { [field]: this.#config[field] });
      }
    }
    const certificate = await this.#certificate(kept);
    const dkim = await loadDkimKeys(kept.dkim, 'config');
    // the listeners build the same context from it; a key that does not fit throws here
    tls.createSecureContext({ key: certificate.key, cert: certificate.cert });
    const dnsblChanged = JSON.stringify(kept.dnsbl) !== JSON.stringify(this.#config.dnsbl);
    const dnsbl = dnsblChanged ? this.#dnsblFor(kept) : undefined;
    const deliveryChanged =
      JSON.stringify(kept.delivery) !== JSON.stringify(this.#config.delivery) ||
      kept.tls.trustedCaFile !== this.#config.tls.trustedCaFile;
    const transport = deliveryChanged && this.#transport ? await this.#buildTransport(kept) : undefined;
    // From here on nothing throws: the new values go into force together.
    this.#config = kept;
    this.#dkim = dkim;
    if (transport) {
      const old = this.#transport;
      this.#transport = transport;
      void old?.close();
    }
    if (dnsblChanged) this.checks.dnsbl = dnsbl;
    this.#setUsers(table);
    for (const listener of this.listeners) listener.update(kept, certificate);
  }

  /**
   * The first step of a drain: readiness goes false while the listeners keep accepting,
   * so that endpoints and load balancers stop sending before close() shuts the door.
   */
  beginDrain(): void {
    if (!this.#stopping) this.logger.info({ event: 'readiness_off' }, 'reporting not ready; still accepting');
    this.#stopping = true;
  }

  /**
   * Drain: readiness goes false, listeners stop accepting, open sessions get graceMs to
   * finish; delivery goes on until the drain deadline; what is still queued then is
   * handed to a peer relay when the policy names one, or stays in the spool.
   */
  async close(graceMs = 10_000, drainDeadlineMs?: number): Promise<void> {
    this.#stopping = true;
    this.#draining = true;
    this.#secretFiles?.close();
    await Promise.all(this.listeners.map((l) => l.close(graceMs)));
    const remaining =
      (await this.#delivery?.stop(drainDeadlineMs ?? this.#config.drain.deadlineSeconds * 1000)) ?? [];
    const handoff = this.#config.drain.handoff;
    if (remaining.length > 0 && handoff && this.#queue && this.#delivery) {
      const password = (await readSecretFile(handoff.passwordFile, 'drain.handoff.passwordFile')) ?? '';
      const result = await handOff({
        ids: remaining,
        queue: this.#delivery,
        config: handoff,
        password,
        hostname: this.#config.hostname,
        logger: this.logger,
      });
      this.metrics.handoffTotal.inc({ result: 'handed_off' }, result.handedOff.length);
      this.metrics.handoffTotal.inc({ result: 'kept' }, result.kept.length);
    } else if (remaining.length > 0) {
      this.logger.info(
        { event: 'drain_left_in_spool', messages: remaining.length },
        'queued mail stays in the spool',
      );
    }
    await this.#transport?.close();
    await this.#admin?.close();
    await this.#stopWatches();
    await this.#store?.close();
    await this.spool.close();
    this.spoolSpace.stop();
    this.logger.info({ event: 'stopped' }, 'relay stopped');
  }

  /**
   * Whether the spool's filesystem has room for a message of `size` bytes (0 when no SIZE
   * was declared) and the reserve. Unknown space counts as room: a write that then fails
   * is still refused.
   */
  spoolRoom(size: number): boolean {
    const free = this.spoolSpace.sample?.freeBytes;
    return free === undefined || free - size >= reserveBytes(this.#config);
  }

  #spoolReadiness(): { ok: boolean; detail: string } {
    const sample = this.spoolSpace.sample;
    const reserve = reserveBytes(this.#config);
    if (!sample) return { ok: true, detail: 'free space unknown' };
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    const ok = sample.freeBytes >= reserve;
    return {
      ok,
      detail: `${mib(sample.freeBytes)} free of ${mib(sample.totalBytes)}${ok ? '' : `, under the reserve of ${mib(reserve)}: MAIL FROM gets 452 4.3.1`}`,
    };
  }

  /** Usage per user (available once started). */
  get usage(): UsageRecorder | undefined {
    return this.#usage;
  }
  /** Abuse detection and automatic suspensions (available once started). */
  get abuse(): AbuseWatch | undefined {
    return this.#abuse;
  }
  /** Recipients refused because mail to them bounced (available once started). */
  get suppression(): SuppressionList | undefined {
    return this.#suppression;
  }
  /** The own-IP blacklist watch (available once started). */
  get ownIp(): OwnIpWatch | undefined {
    return this.#ownIp;
  }

  /** Usage per user, abuse detection and the own-IP watch, all on timers of their own. */
  #startWatches(store: StateStore): void {
    this.#shaper = new Shaper({
      store,
      config: () => this.#config.shaping,
      instance: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      // waits are real (the relay's clock may be a test's fixed one): shaping runs on wall-clock time
      logger: this.logger,
      observer: this.reputationMetrics,
    });
    this.#suppression = new SuppressionList({
      store,
      config: () => this.#config.suppression,
      now: this.#now,
      logger: this.logger,
    });
    this.#usage = new UsageRecorder({
      store,
      config: () => this.#config.usage,
      now: this.#now,
      logger: this.logger,
      onFlush: (ok) => {
        this.metrics.stateOperationsTotal.inc({ op: 'usage_flush' });
        if (!ok) this.metrics.stateErrorsTotal.inc({ op: 'usage_flush' });
      },
    });
    this.#usage.start();
    this.#abuse = new AbuseWatch({
      store,
      config: () => this.#config.abuse,
      logger: this.logger,
      instance: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      now: this.#now,
      observer: new AbuseMetrics(this.metrics.registry),
    });
    // suspensions hold from the start; the first evaluation comes after one interval
    void this.#abuse.refresh().catch(() => undefined);
    this.#abuse.start();
    this.#ownIp = new OwnIpWatch({
      config: () => this.#config,
      logger: this.logger,
      observer: new OwnIpMetrics(this.metrics.registry),
    });
    this.#ownIp.start();
  }

  async #stopWatches(): Promise<void> {
    this.#ownIp?.close();
    this.#abuse?.close();
    await this.#usage?.close();
  }

  #registerUsageApis(server: FastifyInstance, token: string): void {
    const store = this.#store;
    const abuse = this.#abuse;
    if (store) {
      registerUsageApi(server, {
        usage: { report: (q) => readUsageReport(store, q) },
        token,
        now: this.#now,
      });
    }
    if (abuse) registerAbuseApi(server, { abuse, token });
    if (this.#suppression) registerSuppressionApi(server, { suppression: this.#suppression, token });
  }
}
