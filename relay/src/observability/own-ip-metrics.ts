// Metrics of the own-IP blacklist watch. The zone is the only label: the address list is
// configured and bounded, but egress addresses change with nodes and NAT and each change
// would leave a stale series behind; which address is listed is in the log line and in
// /readyz. One gauge per zone is what an alert needs.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { OwnIpObserver } from '../own-ip/watch.ts';

export class OwnIpMetrics implements OwnIpObserver {
  readonly listed: Gauge<'zone'>;
  readonly checksTotal: Counter<'zone' | 'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.listed = new Gauge({
      name: 'sluice_own_ip_listed',
      aggregator: 'max',
      help: "1 while one of the relays' own egress addresses is listed in the zone, else 0",
      labelNames: ['zone'],
      registers,
    });
    this.checksTotal = new Counter({
      name: 'sluice_own_ip_checks_total',
      help: 'Lookups of own egress addresses, by zone and result (listed, clear, error, failure)',
      labelNames: ['zone', 'result'],
      registers,
    });
  }

  checked(zone: string, result: string): void {
    this.checksTotal.inc({ zone, result });
  }

  zoneListed(zone: string, listed: boolean): void {
    this.listed.set({ zone }, listed ? 1 : 0);
  }

  forgetZone(zone: string): void {
    this.listed.remove({ zone });
  }
}
