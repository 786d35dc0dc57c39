// A metrics catalogue read from a prom-client registry (so the table is what /metrics
// exposes), its Markdown table, and the table parsed back so that tests can compare it with
// a real /metrics scrape. Used for the relay's and the operator's catalogues alike.
import { markdownTable } from './markdown.ts';

export interface MetricDoc {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/** What metricDocs needs of a prom-client Registry. */
export interface MetricRegistry {
  getMetricsAsArray(): readonly { name: string; type: unknown; help: string }[];
}

/** Every metric of a registry, sorted by name. */
export function metricDocs(registry: MetricRegistry): MetricDoc[] {
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

/** The catalogue as a Markdown table. */
export function metricsTable(docs: readonly MetricDoc[]): string {
  return markdownTable(
    ['metric', 'type', 'labels', 'meaning'],
    docs.map((d) => [`\`${d.name}\``, d.type, d.labels.map((l) => `\`${l}\``).join(', '), d.help]),
  );
}

/** The rows of a metrics table in Markdown text, parsed back. */
export function parseMetricsTable(markdown: string): MetricDoc[] {
  return markdown
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
