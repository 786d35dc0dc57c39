// The generated operator metrics reference (docs/reference/operator-metrics.md) against what the operator's admin server really
// exposes on /metrics once every metric has moved: the same metrics, types, help and
// labels; and no label that would carry a user, an address or an IP.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { metricDocs, parseMetricsTable } from '@sluice/tools/metrics-docs';
import { startAdminServer } from './admin.ts';
import { OperatorMetrics } from './metrics.ts';

const CATALOGUE = new URL('../../../docs/reference/operator-metrics.md', import.meta.url);
const FORBIDDEN_LABELS = ['user', 'username', 'ip', 'client_ip', 'address', 'sender', 'recipient'];

/** Families of a text exposition: type, help and the label names of their samples. */
function families(text: string): Map<string, { type: string; help: string; labels: Set<string> }> {
  const out = new Map<string, { type: string; help: string; labels: Set<string> }>();
  let current: { type: string; help: string; labels: Set<string> } | undefined;
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const name = meta[2] ?? '';
      current = out.get(name) ?? { type: '', help: '', labels: new Set() };
      out.set(name, current);
      if (meta[1] === 'TYPE') current.type = meta[3] ?? '';
      else current.help = meta[3] ?? '';
    } else if (current && line.trim()) {
      for (const m of line.matchAll(/([a-zA-Z_]\w*)="/g)) if (m[1] !== 'le') current.labels.add(m[1] ?? '');
    }
  }
  return out;
}

describe('operator metrics catalogue', () => {
  it('lists exactly what /metrics exposes, with type, help and labels', async () => {
    const metrics = new OperatorMetrics();
    metrics.bindQueueDepth(() => 2);
    metrics.reconciled('RelayPolicy', 'success', 0.01);
    metrics.reconciled('RelayPolicy', 'error', 0.2);
    metrics.leading(true);
    metrics.kubeWrite('apply');
    const admin = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      readiness: () => ({ ok: true, detail: 'test' }),
    });
    try {
      const exposed = families(await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text());
      const rows = parseMetricsTable(await readFile(CATALOGUE, 'utf8'));
      assert.deepEqual([...exposed.keys()].sort(), rows.map((r) => r.name).sort());
      for (const row of rows) {
        const family = exposed.get(row.name);
        assert.equal(family?.type, row.type, `${row.name} type`);
        assert.equal(family?.help, row.help, `${row.name} help`);
        assert.deepEqual([...(family?.labels ?? [])].sort(), [...row.labels].sort(), `${row.name} labels`);
      }
    } finally {
      await admin.close();
    }
  });

  it('has no label that carries a user, an address or an IP', () => {
    const labels = metricDocs(new OperatorMetrics().registry).flatMap((d) => d.labels);
    assert.deepEqual(
      labels.filter((l) => FORBIDDEN_LABELS.includes(l)),
      [],
    );
  });
});
