// Metrics of what remote servers answer and what the relay does about it: delivery
// outcomes by reply class. Labels come from closed lists (the reply classes); which
// recipient or user is in the log line, never in a label.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { GroupLimits, Limit, ShapingObserver, Throttle } from '../delivery/shaping.ts';
import type { ThrottleAction } from '../delivery/shaping-rules.ts';
import { REPLY_CLASSES } from '../wire/reply-classes.ts';

const RESULTS = ['delivered', 'deferred', 'bounced'] as const;

export class ReputationMetrics implements ShapingObserver {
  readonly outcomesTotal: Counter<'result' | 'class'>;
  readonly throttlesTotal: Counter<'group' | 'action'>;
  readonly waitsTotal: Counter<'group' | 'limit'>;
  readonly deferralsTotal: Counter<'group' | 'reason'>;
  readonly throttledGroups: Gauge<'group' | 'action'>;
  readonly limit: Gauge<'group' | 'limit'>;
  readonly connections: Gauge<'group'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.outcomesTotal = new Counter({
      name: 'sluice_delivery_outcomes_total',
      help: 'Delivery attempts per recipient by result (delivered, deferred, bounced) and class of the answer (invalid-recipient, rate-limited, … see docs/relay.md)',
      labelNames: ['result', 'class'],
      registers,
    });
    for (const result of RESULTS) {
      for (const cls of REPLY_CLASSES) this.outcomesTotal.inc({ result, class: cls }, 0);
    }
    this.throttlesTotal = new Counter({
      name: 'sluice_shaping_throttles_total',
      help: 'Throttling replies that slowed down (action=slow) or suspended (action=suspend) a destination group on every relay, by group; counted by the relay that got the reply',
      labelNames: ['group', 'action'],
      registers,
    });
    this.waitsTotal = new Counter({
      name: 'sluice_shaping_waits_total',
      help: "Deliveries that waited for room in their destination group's shared limits, by group and limit (connections, connection_rate, rate)",
      labelNames: ['group', 'limit'],
      registers,
    });
    this.deferralsTotal = new Counter({
      name: 'sluice_shaping_deferrals_total',
      help: 'Delivery jobs deferred by shaping, by group and reason (suspended; connections, connection_rate or rate: no room within shaping.maxWaitSeconds)',
      labelNames: ['group', 'reason'],
      registers,
    });
    this.throttledGroups = new Gauge({
      name: 'sluice_shaping_throttled',
      aggregator: 'max',
      help: 'A destination group is slowed down or suspended (1) as this relay last read the shared state, by group and action',
      labelNames: ['group', 'action'],
      registers,
    });
    this.limit = new Gauge({
      name: 'sluice_shaping_limit',
      aggregator: 'max',
      help: "A destination group's limits in force for all relays together, as this relay last read them (connections, connections_per_minute, messages_per_connection, messages_per_second)",
      labelNames: ['group', 'limit'],
      registers,
    });
    this.connections = new Gauge({
      name: 'sluice_shaping_connections',
      help: "This relay's open connections to a destination group (each holds one of the group's shared slots)",
      labelNames: ['group'],
      registers,
    });
  }

  throttled(group: string, action: ThrottleAction): void {
    this.throttlesTotal.inc({ group, action });
  }

  waited(group: string, limit: Limit): void {
    this.waitsTotal.inc({ group, limit });
  }

  deferred(group: string, reason: 'suspended' | Limit): void {
    this.deferralsTotal.inc({ group, reason });
  }

  state(limits: GroupLimits, throttle: Throttle | null): void {
    const { group } = limits;
    this.throttledGroups.set({ group, action: 'slow' }, throttle?.action === 'slow' ? 1 : 0);
    this.throttledGroups.set({ group, action: 'suspend' }, throttle?.action === 'suspend' ? 1 : 0);
    this.limit.set({ group, limit: 'connections' }, limits.connections);
    this.limit.set({ group, limit: 'connections_per_minute' }, limits.connectionsPerMinute);
    this.limit.set({ group, limit: 'messages_per_connection' }, limits.messagesPerConnection);
    this.limit.set({ group, limit: 'messages_per_second' }, limits.messagesPerSecond);
  }

  connectionsChanged(group: string, delta: number): void {
    this.connections.inc({ group }, delta);
  }

  outcome(result: string, cls: string): void {
    this.outcomesTotal.inc({ result, class: cls });
  }
}
