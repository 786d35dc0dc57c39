import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { RelayMetrics } from './observability/metrics.ts';
import { VERSION } from './version.ts';

describe('the relay version', () => {
  it("is the package's version and the chart's appVersion", async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(VERSION, pkg.version);
    const chart = await readFile(new URL('../../charts/sluice/Chart.yaml', import.meta.url), 'utf8');
    assert.match(chart, new RegExp(`^appVersion: "${VERSION.replaceAll('.', '\\.')}"$`, 'm'));
  });

  it('is on /metrics as sluice_build_info, beside the process metrics under their standard names', async () => {
    const text = await new RelayMetrics({ defaultMetrics: true }).registry.metrics();
    assert.match(
      text,
      new RegExp(
        `^sluice_build_info\\{version="${VERSION}",nodejs_version="${process.versions.node}"\\} 1$`,
        'm',
      ),
    );
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ])
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    assert.doesNotMatch(text, /^sluice_(process|nodejs)_/m);
  });
});
