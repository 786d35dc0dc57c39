// The relay's Prometheus metrics. One registry per relay instance, so tests can run
// several relays in one process. No label ever carries a user name or an IP address:
// cardinality stays bounded by the listeners and the closed reason list. With several
// workers the primary sums each metric over them (prom-client's AggregatorRegistry); a gauge
// whose sum means nothing (a flag, a free-space reading, an age) says how it merges instead.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { QUARANTINE_REASONS, RECOVERY_REASONS } from '../queue/damage.ts';
import { VERSION } from '../version.ts';
import { REASONS } from './reasons.ts';

export class RelayMetrics {
  readonly registry = new Registry();
  /** Where the queue gauges read from at scrape time (set once delivery runs). */
  queueSource: (() => { size: number; held?: number; oldestReceivedAt: number | undefined }) | undefined;
  /** Where the spool space gauges read from: free bytes (undefined when unknown) and the reserve. */
  spoolSpaceSource: (() => { free: number | undefined; reserve: number }) | undefined;
  readonly connectionsTotal: Counter<'listener'>;
  readonly connectionsOpen: Gauge<'listener'>;
  readonly tlsConnectionsTotal: Counter<'listener' | 'version'>;
  readonly authTotal: Counter<'result'>;
  readonly messagesTotal: Counter<'result' | 'reason'>;
  readonly dkimSignaturesTotal: Counter<'result' | 'domain' | 'selector'>;
  readonly dmarcPrecheckTotal: Counter<'result' | 'action' | 'reason'>;
  readonly rejectionsTotal: Counter<'reason' | 'stage'>;
  readonly recipientsTotal: Counter<'result'>;
  readonly receivedBytesTotal: Counter;
  readonly messageSizeBytes: Histogram;
  readonly dataReplySeconds: Histogram<'result'>;
  readonly spoolCommitSeconds: Histogram;
  readonly configReloadsTotal: Counter<'result'>;
  readonly configLastReloadSuccessful: Gauge;
  readonly bareLineEndingsTotal: Counter<'kind'>;
  readonly stateOperationsTotal: Counter<'op'>;
  readonly stateErrorsTotal: Counter<'op'>;
  readonly stateShared: Gauge;
  readonly rateLimitHitsTotal: Counter<'scope' | 'what'>;
  readonly authLockoutsTotal: Counter<'scope'>;
  readonly dnsblLookupsTotal: Counter<'zone' | 'result' | 'tier'>;
  readonly dnsblLookupSeconds: Histogram<'zone' | 'tier'>;
  readonly dnsblZoneDisabledTotal: Counter<'zone'>;
  readonly dnsblListedTotal: Counter<'zone' | 'action'>;
  readonly queueMessages: Gauge;
  readonly queueHeldMessages: Gauge;
  readonly queueOldestAgeSeconds: Gauge;
  readonly queueQuarantinedTotal: Counter<'reason'>;
  readonly queueRecoveredTotal: Counter<'reason'>;
  readonly spoolFreeBytes: Gauge;
  readonly spoolReserveBytes: Gauge;
  readonly deliveryAttemptsTotal: Counter<'result'>;
  readonly deliveryMtaStsTotal: Counter<'mode' | 'result' | 'group'>;
  readonly deliveryDaneTotal: Counter<'result' | 'group'>;
  readonly deliveryDurationSeconds: Histogram<'result'>;
  readonly deliveryRetriesTotal: Counter;
  readonly dsnTotal: Counter<'action'>;
  readonly handoffTotal: Counter<'result'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // prom-client's own names (process_*, nodejs_*), which stock Node.js dashboards query
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'sluice_build_info',
      aggregator: 'first',
      help: 'Always 1; the labels say which release of the relay runs on which Node.js',
      labelNames: ['version', 'nodejs_version'],
      registers,
    }).set({ version: VERSION, nodejs_version: process.versions.node }, 1);
    this.connectionsTotal = new Counter({
      name: 'sluice_smtp_connections_total',
      help: 'SMTP connections accepted, by listener',
      labelNames: ['listener'],
      registers,
    });
    this.connectionsOpen = new Gauge({
      name: 'sluice_smtp_connections_open',
      help: 'SMTP connections open now, by listener',
      labelNames: ['listener'],
      registers,
    });
    this.tlsConnectionsTotal = new Counter({
      name: 'sluice_smtp_tls_connections_total',
      help: 'TLS handshakes completed on SMTP connections (implicit TLS or STARTTLS), by listener and protocol version',
      labelNames: ['listener', 'version'],
      registers,
    });
    this.authTotal = new Counter({
      name: 'sluice_smtp_auth_total',
      help: 'SMTP AUTH attempts by result (success, failure, suspended, locked)',
      labelNames: ['result'],
      registers,
    });
    this.messagesTotal = new Counter({
      name: 'sluice_smtp_messages_total',
      help: 'Messages at end of DATA by result (accepted, rejected, tempfail, aborted) and reason',
      labelNames: ['result', 'reason'],
      registers,
    });
    this.dkimSignaturesTotal = new Counter({
      name: 'sluice_dkim_signatures_total',
      help: "Accepted messages by DKIM signing result (signed; or no_key, no_from, header_too_big), domain (signed: d=; unsigned: the From domain where it is a configured sending domain; any other: other) and selector (the first key's; none when unsigned)",
      labelNames: ['result', 'domain', 'selector'],
      registers,
    });
    this.dmarcPrecheckTotal = new Counter({
      name: 'sluice_dmarc_precheck_total',
      help: 'DMARC pre-checks of header From domains by result (no_policy, aligned_dkim, aligned_spf, would_fail, dns_error), what was done (reject, warn; none unless would_fail) and reason (would_fail: no_key, unaligned_signature, spf_not_pass, no_egress_ips; dns_error: dmarc_lookup, spf_lookup; else none)',
      labelNames: ['result', 'action', 'reason'],
      registers,
    });
    this.rejectionsTotal = new Counter({
      name: 'sluice_smtp_rejections_total',
      help: 'Every refusal the relay sent, by reason and SMTP stage',
      labelNames: ['reason', 'stage'],
      registers,
    });
    this.recipientsTotal = new Counter({
      name: 'sluice_smtp_recipients_total',
      help: 'RCPT TO by result (accepted, rejected, dropped by truncate mode)',
      labelNames: ['result'],
      registers,
    });
    this.receivedBytesTotal = new Counter({
      name: 'sluice_smtp_received_bytes_total',
      help: 'Message bytes accepted into the spool',
      registers,
    });
    this.messageSizeBytes = new Histogram({
      name: 'sluice_smtp_message_size_bytes',
      help: 'Size of accepted messages',
      buckets: [1e3, 1e4, 1e5, 1e6, 5e6, 1e7, 3e7],
      registers,
    });
    this.dataReplySeconds = new Histogram({
      name: 'sluice_smtp_data_reply_seconds',
      help: "Time from the end of a message's DATA to the relay's reply, by result (accepted, rejected, tempfail): how long a client waits for its 250",
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.spoolCommitSeconds = new Histogram({
      name: 'sluice_spool_commit_seconds',
      help: "Time to make an accepted message durable before its 250: the spool file's last write and fsync, the rename into the queue and the queue directory's fsync",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.configReloadsTotal = new Counter({
      name: 'sluice_config_reloads_total',
      help: 'Config and users file reloads by result (applied, rejected)',
      labelNames: ['result'],
      registers,
    });
    this.configLastReloadSuccessful = new Gauge({
      name: 'sluice_config_last_reload_successful',
      aggregator: 'min',
      help: 'Whether the last reload of the config and users files applied (1) or was rejected (0), so the relay runs on older files',
      registers,
    });
    this.configLastReloadSuccessful.set(1);
    this.bareLineEndingsTotal = new Counter({
      name: 'sluice_smtp_bare_line_endings_total',
      help: 'Bare CR or LF line endings rewritten to CRLF (SMTP smuggling defence)',
      labelNames: ['kind'],
      registers,
    });
    this.stateOperationsTotal = new Counter({
      name: 'sluice_state_operations_total',
      help: 'Calls to the state store (one round trip each on Redis), by operation',
      labelNames: ['op'],
      registers,
    });
    this.stateErrorsTotal = new Counter({
      name: 'sluice_state_errors_total',
      help: 'State store calls that failed, by operation',
      labelNames: ['op'],
      registers,
    });
    this.stateShared = new Gauge({
      name: 'sluice_state_shared',
      aggregator: 'min',
      help: '1 while shared state (Redis) is in use, 0 while the relay runs on local state',
      registers,
    });
    this.rateLimitHitsTotal = new Counter({
      name: 'sluice_ratelimit_hits_total',
      help: 'Refusals because a rate limit was reached, by scope (user, ip) and what was counted',
      labelNames: ['scope', 'what'],
      registers,
    });
    this.authLockoutsTotal = new Counter({
      name: 'sluice_auth_lockouts_total',
      help: 'AUTH lockouts started, by scope (user, ip)',
      labelNames: ['scope'],
      registers,
    });
    this.dnsblLookupsTotal = new Counter({
      name: 'sluice_dnsbl_lookups_total',
      help: 'DNSBL lookups by zone, result (listed, clear, error, failure, skipped) and cache tier (local, shared, dns)',
      labelNames: ['zone', 'result', 'tier'],
      registers,
    });
    this.dnsblLookupSeconds = new Histogram({
      name: 'sluice_dnsbl_lookup_duration_seconds',
      help: 'DNSBL lookup latency by zone and cache tier',
      labelNames: ['zone', 'tier'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5],
      registers,
    });
    this.dnsblZoneDisabledTotal = new Counter({
      name: 'sluice_dnsbl_zone_disabled_total',
      help: 'Times a DNSBL zone was disabled after an error answer (e.g. Spamhaus 127.255.255.254)',
      labelNames: ['zone'],
      registers,
    });
    this.dnsblListedTotal = new Counter({
      name: 'sluice_dnsbl_listed_total',
      help: 'Clients found listed, by zone and action (reject, tag)',
      labelNames: ['zone', 'action'],
      registers,
    });
    const metrics = this;
    this.queueMessages = new Gauge({
      name: 'sluice_queue_messages',
      help: 'Messages in the queue (spool) of this relay',
      registers,
      collect() {
        this.set(metrics.queueSource?.().size ?? 0);
      },
    });
    this.queueHeldMessages = new Gauge({
      name: 'sluice_queue_held_messages',
      help: 'Messages on hold in the spool of this relay (never attempted until released)',
      registers,
      collect() {
        this.set(metrics.queueSource?.().held ?? 0);
      },
    });
    this.queueOldestAgeSeconds = new Gauge({
      name: 'sluice_queue_oldest_message_age_seconds',
      aggregator: 'max',
      help: 'Age of the oldest message in the queue (0 when empty)',
      registers,
      collect() {
        const oldest = metrics.queueSource?.().oldestReceivedAt;
        this.set(oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });
    this.queueQuarantinedTotal = new Counter({
      name: 'sluice_queue_quarantined_total',
      help: "Queue entries that could not be delivered from, moved to the spool's corrupt/ directory, by reason (corrupt_message, corrupt_envelope, unreadable, unknown_entry)",
      labelNames: ['reason'],
      registers,
    });
    this.queueRecoveredTotal = new Counter({
      name: 'sluice_queue_recovered_total',
      help: 'Messages delivered from less than their full state, by reason (damaged_state_file: from the envelope in the message file; unknown_recipient_state: such recipients tried again)',
      labelNames: ['reason'],
      registers,
    });
    this.spoolFreeBytes = new Gauge({
      name: 'sluice_spool_free_bytes',
      aggregator: 'min',
      help: "Free space on the spool's filesystem for the relay's user, as last read (every 2 s)",
      registers,
      collect() {
        const free = metrics.spoolSpaceSource?.().free;
        if (free !== undefined) this.set(free);
      },
    });
    this.spoolReserveBytes = new Gauge({
      name: 'sluice_spool_reserve_bytes',
      aggregator: 'max',
      help: 'Free space the relay keeps: below it (plus a declared SIZE), MAIL FROM gets 452 4.3.1',
      registers,
      collect() {
        this.set(metrics.spoolSpaceSource?.().reserve ?? 0);
      },
    });
    this.deliveryDaneTotal = new Counter({
      name: 'sluice_delivery_dane_total',
      help: 'Connections to MX hosts with DNSSEC-validated TLSA records, by result (verified; failed: deferred) and destination group',
      labelNames: ['result', 'group'],
      registers,
    });
    this.deliveryMtaStsTotal = new Counter({
      name: 'sluice_delivery_mta_sts_total',
      help: "Connections to MX hosts of domains with an MTA-STS policy, by the policy's mode and result (enforced, failed: deferred under enforce; testing_ok, testing_failed: delivered, what enforce would have done) and destination group",
      labelNames: ['mode', 'result', 'group'],
      registers,
    });
    this.deliveryAttemptsTotal = new Counter({
      name: 'sluice_delivery_attempts_total',
      help: 'Delivery attempts per recipient by result (delivered, deferred, bounced)',
      labelNames: ['result'],
      registers,
    });
    this.deliveryDurationSeconds = new Histogram({
      name: 'sluice_delivery_duration_seconds',
      help: 'Time of one delivery attempt (one connection transaction), by result',
      labelNames: ['result'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.deliveryRetriesTotal = new Counter({
      name: 'sluice_delivery_retries_total',
      help: 'Messages rescheduled for another attempt',
      registers,
    });
    this.dsnTotal = new Counter({
      name: 'sluice_delivery_dsn_total',
      help: 'Delivery status notifications generated, by action (failed = bounce, delayed = warning, relayed = NOTIFY=SUCCESS to a next hop without DSN)',
      labelNames: ['action'],
      registers,
    });
    this.handoffTotal = new Counter({
      name: 'sluice_drain_handoff_total',
      help: 'Messages handed to a peer relay on shutdown, by result (handed_off, kept)',
      labelNames: ['result'],
      registers,
    });
    // zero every reason so dashboards see the series before the first event
    for (const reason of REASONS) this.rejectionsTotal.inc({ reason, stage: 'none' }, 0);
    for (const reason of QUARANTINE_REASONS) this.queueQuarantinedTotal.inc({ reason }, 0);
    for (const reason of RECOVERY_REASONS) this.queueRecoveredTotal.inc({ reason }, 0);
  }
}
