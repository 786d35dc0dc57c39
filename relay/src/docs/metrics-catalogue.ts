// The relay's metrics catalogue: every metric the relay registers, with its type, labels
// and help, read from a registry (so the README table is what the code exposes). A test
// compares it with a real relay's /metrics, so a metric class added elsewhere and not
// listed here fails it. prom-client's default process metrics (sluice_process_*,
// sluice_nodejs_*) are left out: the README names them as a group, and their set
// depends on the platform.
import type { Registry } from 'prom-client';
import { AbuseMetrics } from '../observability/abuse-metrics.ts';
import { RelayMetrics } from '../observability/metrics.ts';
import { OwnIpMetrics } from '../observability/own-ip-metrics.ts';

export interface MetricDoc {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/** The prefixes of prom-client's default metrics, as the relay registers them. */
export const PROCESS_METRIC_PREFIXES = ['sluice_process_', 'sluice_nodejs_'] as const;

/** Every metric of a registry, sorted by name. */
export function metricDocs(registry: Registry): MetricDoc[] {
  return registry
    .getMetricsAsArray()
    .map((metric) => ({
      name: metric.name,
      type: String(metric.type),
      // prom-client keeps labelNames on each metric; its type declarations leave it out
      labels: [...((metric as unknown as { labelNames?: readonly string[] }).labelNames ?? [])],
      help: metric.help,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Every metric the relay registers: RelayMetrics and the metric classes that share its registry. */
export function relayMetricDocs(): MetricDoc[] {
  const metrics = new RelayMetrics({ defaultMetrics: false });
  new AbuseMetrics(metrics.registry);
  new OwnIpMetrics(metrics.registry);
  return metricDocs(metrics.registry);
}

/** The catalogue as a Markdown table. */
export function metricsTable(docs: readonly MetricDoc[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    '| metric | type | labels | meaning |',
    '| --- | --- | --- | --- |',
    ...docs.map(
      (d) => `| \`${d.name}\` | ${d.type} | ${d.labels.map((l) => `\`${l}\``).join(', ')} | ${esc(d.help)} |`,
    ),
  ].join('\n');
}

/** The rows of a generated metrics table in README text, parsed back (tests compare them with /metrics). */
export function parseMetricsTable(readme: string, section: string): MetricDoc[] {
  const begin = readme.indexOf(`<!-- BEGIN generated:${section} -->`);
  const end = readme.indexOf(`<!-- END generated:${section} -->`);
  if (begin === -1 || end === -1) throw new Error(`README.md lacks the ${section} markers`);
  return readme
    .slice(begin, end)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => {
      const [name = '', type = '', labels = '', ...help] = line.slice(2, -2).split(' | ');
      return {
        name: name.replace(/`/g, ''),
        type,
        labels: labels ? labels.split(', ').map((l) => l.replace(/`/g, '')) : [],
        help: help.join(' | ').replace(/\\\|/g, '|'),
      };
    });
}
