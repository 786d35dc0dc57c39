// Every generated file of the repository, by path, with the function that renders it from
// its source of truth: the reference pages in docs/reference/ (config and users file
// schema, reply table, error catalogue, metric registries) and the CRDs (from the
// operator's API schema) in crds/ and the chart's crds/. `make generate` writes them;
// reference.test.ts fails when a file on disk is stale.

import { renderCrds } from '@sluice/operator/crd-render';
import { OperatorMetrics } from '@sluice/operator/metrics';
import { RelayConfigSchema, UsersFileSchema } from '@sluice/relay/config-schema';
import { ERROR_CODES } from '@sluice/relay/errors';
import { relayMetricsRegistry } from '@sluice/relay/metrics-catalogue';
import { LIBRARY_REPLIES, REPLIES } from '@sluice/relay/replies';
import { generatedPage, markdownTable } from '@sluice/tools/markdown';
import { metricDocs, metricsTable } from '@sluice/tools/metrics-docs';
import { schemaTable } from '@sluice/tools/schema-table';

function configPage(): string {
  return generatedPage('Relay configuration reference', '`relay/src/config/schema.ts`', [
    "Every field of the relay's config file and users file, from the schema the relay validates them with. See [the relay](../relay.md#running-from-files) for how the files are read and reloaded.",
    `## Config file\n\n${schemaTable(RelayConfigSchema)}`,
    `## Users file\n\n${schemaTable(UsersFileSchema)}`,
  ]);
}

function repliesPage(): string {
  const rows = [
    ...Object.entries(REPLIES).map(([key, spec]) => [
      `\`${key}\``,
      String(spec.code),
      spec.enhanced,
      spec.text,
      `\`${spec.reason}\``,
    ]),
    ...LIBRARY_REPLIES.map((spec) => [
      '(smtp-server)',
      String(spec.code),
      spec.enhanced,
      spec.text,
      `\`${spec.reason}\``,
    ]),
  ];
  return generatedPage('Reply catalogue', '`relay/src/smtp/replies.ts`', [
    'Every reply the relay sends comes from one table; its reason label is the one metrics (`reason`) and logs carry. Protocol errors are worded by `smtp-server` and carry enhanced status codes (RFC 3463) as well.',
    markdownTable(['reply', 'code', 'enhanced', 'text', 'reason label'], rows),
  ]);
}

function errorsPage(): string {
  return generatedPage('Error codes', '`relay/src/errors.ts`', [
    'Errors the relay reports in logs and on its command line carry a stable code; code never branches on message text.',
    markdownTable(
      ['code', 'meaning'],
      Object.entries(ERROR_CODES).map(([code, meaning]) => [`\`${code}\``, meaning]),
    ),
  ]);
}

function relayMetricsPage(): string {
  return generatedPage('Relay metrics', "the relay's metric registry", [
    "Every metric a relay exposes on its admin server's `/metrics`, besides prom-client's process metrics under their standard names (`process_*`, `nodejs_*`). A test compares this table with a real relay's `/metrics` after real traffic.",
    metricsTable(metricDocs(relayMetricsRegistry())),
  ]);
}

function operatorMetricsPage(): string {
  return generatedPage('Operator metrics', "the operator's metric registry", [
    "Every metric the operator exposes on its admin server's `/metrics`, besides the process metrics. A test compares this table with the operator's `/metrics`.",
    metricsTable(metricDocs(new OperatorMetrics().registry)),
  ]);
}

/** Every generated file, by its path from the repository root. */
export function generatedFiles(): Record<string, () => string> {
  const files: Record<string, () => string> = {
    'docs/reference/config.md': configPage,
    'docs/reference/replies.md': repliesPage,
    'docs/reference/errors.md': errorsPage,
    'docs/reference/relay-metrics.md': relayMetricsPage,
    'docs/reference/operator-metrics.md': operatorMetricsPage,
  };
  // crds/ for kubectl apply, and the chart's crds/ for helm install (the same bytes)
  for (const [file, text] of Object.entries(renderCrds())) {
    files[`crds/${file}`] = () => text;
    files[`charts/sluice/crds/${file}`] = () => text;
  }
  return files;
}
