// The operator's metrics catalogue for the README: every metric OperatorMetrics registers
// (without the process metrics), read from its registry, so the table is what /metrics
// exposes. `make generate` writes it between the operator-metrics markers; a test fails
// when the README is stale. (The relay has its own; the operator does not import it.)
import { OperatorMetrics } from './metrics.ts';

export interface MetricDoc {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

export const OPERATOR_METRICS_SECTION = 'operator-metrics';

export function operatorMetricDocs(): MetricDoc[] {
  return new OperatorMetrics().registry
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

/** The catalogue as a Markdown table (the relay's table has the same columns). */
export function operatorMetricsTable(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    '| metric | type | labels | meaning |',
    '| --- | --- | --- | --- |',
    ...operatorMetricDocs().map(
      (d) => `| \`${d.name}\` | ${d.type} | ${d.labels.map((l) => `\`${l}\``).join(', ')} | ${esc(d.help)} |`,
    ),
  ].join('\n');
}

/** README text with the operator's metrics table between its markers. */
export function renderOperatorMetrics(readme: string): string {
  const begin = `<!-- BEGIN generated:${OPERATOR_METRICS_SECTION} -->`;
  const end = `<!-- END generated:${OPERATOR_METRICS_SECTION} -->`;
  const start = readme.indexOf(begin);
  const stop = readme.indexOf(end);
  if (start === -1 || stop === -1) throw new Error(`README.md lacks the ${OPERATOR_METRICS_SECTION} markers`);
  return `${readme.slice(0, start + begin.length)}\n${operatorMetricsTable()}\n${readme.slice(stop)}`;
}
