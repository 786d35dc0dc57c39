// The registry with every metric the relay registers: RelayMetrics and the metric classes
// that share its registry, without prom-client's process metrics. The generated metrics
// reference (docs/reference/relay-metrics.md) is read from it, and a test compares that
// with a real relay's /metrics, so a metric class added elsewhere and not listed here fails it.
import type { Registry } from 'prom-client';
import { AbuseMetrics } from './abuse-metrics.ts';
import { RelayMetrics } from './metrics.ts';
import { OwnIpMetrics } from './own-ip-metrics.ts';
import { ReputationMetrics } from './reputation-metrics.ts';

/** The prefixes of prom-client's default metrics, as the relay registers them. */
export const PROCESS_METRIC_PREFIXES = ['process_', 'nodejs_'] as const;

export function relayMetricsRegistry(): Registry {
  const metrics = new RelayMetrics({ defaultMetrics: false });
  new AbuseMetrics(metrics.registry);
  new OwnIpMetrics(metrics.registry);
  new ReputationMetrics(metrics.registry);
  return metrics.registry;
}
