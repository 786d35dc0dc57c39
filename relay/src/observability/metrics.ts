// The relay's Prometheus metrics. One registry per relay instance, so tests can run
// several relays in one process. No label ever carries a user name or an IP address:
// cardinality stays bounded by the listeners and the closed reason list.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { REASONS } from '../smtp/replies.ts';

export class RelayMetrics {
  readonly registry = new Registry();
  readonly connectionsTotal: Counter<'listener'>;
  readonly connectionsOpen: Gauge<'listener'>;
  readonly authTotal: Counter<'result'>;
  readonly messagesTotal: Counter<'result' | 'reason'>;
  readonly rejectionsTotal: Counter<'reason' | 'stage'>;
  readonly recipientsTotal: Counter<'result'>;
  readonly receivedBytesTotal: Counter;
  readonly messageSizeBytes: Histogram;
  readonly configReloadsTotal: Counter<'result'>;
  readonly bareLineEndingsTotal: Counter<'kind'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
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
    this.authTotal = new Counter({
      name: 'sluice_smtp_auth_total',
      help: 'SMTP AUTH attempts by result (success, failure, suspended)',
      labelNames: ['result'],
      registers,
    });
    this.messagesTotal = new Counter({
      name: 'sluice_smtp_messages_total',
      help: 'Messages at end of DATA by result (accepted, rejected, tempfail) and reason',
      labelNames: ['result', 'reason'],
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
    this.configReloadsTotal = new Counter({
      name: 'sluice_config_reloads_total',
      help: 'Config and users file reloads by result (applied, rejected)',
      labelNames: ['result'],
      registers,
    });
    this.bareLineEndingsTotal = new Counter({
      name: 'sluice_smtp_bare_line_endings_total',
      help: 'Bare CR or LF line endings rewritten to CRLF (SMTP smuggling defence)',
      labelNames: ['kind'],
      registers,
    });
    // zero every reason so dashboards see the series before the first event
    for (const reason of REASONS) this.rejectionsTotal.inc({ reason, stage: 'none' }, 0);
  }
}
