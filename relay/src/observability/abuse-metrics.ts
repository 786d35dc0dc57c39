// Metrics of abuse detection, on the relay's registry. The kind is the only label: which
// user is flagged is in the log line and on GET /abuse, never in a label.
import { Counter, Gauge, type Registry } from 'prom-client';
import { ABUSE_KINDS, type AbuseKind } from '../abuse/detect.ts';
import type { AbuseObserver } from '../abuse/watch.ts';

export class AbuseMetrics implements AbuseObserver {
  readonly flagsTotal: Counter<'kind'>;
  readonly flaggedUsers: Gauge<'kind'>;
  readonly suspendedUsers: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.flagsTotal = new Counter({
      name: 'sluice_abuse_flags_total',
      help: 'Accounts flagged as possibly compromised, by kind (volume_spike, many_client_ips, mostly_rejected, invalid_recipients, spam_blocked); counted once per cluster',
      labelNames: ['kind'],
      registers,
    });
    this.flaggedUsers = new Gauge({
      name: 'sluice_abuse_flagged_users',
      aggregator: 'max',
      help: 'Accounts with a live abuse flag, by kind (the same on every relay of a policy)',
      labelNames: ['kind'],
      registers,
    });
    this.suspendedUsers = new Gauge({
      name: 'sluice_abuse_suspended_users',
      aggregator: 'max',
      help: 'Accounts the relays refuse after an automatic abuse suspension',
      registers,
    });
    for (const kind of ABUSE_KINDS) {
      this.flagsTotal.inc({ kind }, 0);
      this.flaggedUsers.set({ kind }, 0);
    }
    this.suspendedUsers.set(0);
  }

  flagged(kind: AbuseKind): void {
    this.flagsTotal.inc({ kind });
  }

  current(flags: Readonly<Record<AbuseKind, number>>, suspended: number): void {
    for (const kind of ABUSE_KINDS) this.flaggedUsers.set({ kind }, flags[kind]);
    this.suspendedUsers.set(suspended);
  }
}
