import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { OperatorMetrics } from './server/metrics.ts';
import { OPERATOR_VERSION, relayImage } from './version.ts';

describe('the operator version', () => {
  it("is the package's version and the chart's appVersion, and names the relay image", async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(OPERATOR_VERSION, pkg.version);
    const chart = await readFile(new URL('../../charts/sluice/Chart.yaml', import.meta.url), 'utf8');
    assert.match(chart, new RegExp(`^appVersion: "${OPERATOR_VERSION.replaceAll('.', '\\.')}"$`, 'm'));
    assert.equal(relayImage(), `ghcr.io/sluice-dev/relay:${OPERATOR_VERSION}`);
    assert.equal(
      relayImage('registry.example/mirror/relay'),
      `registry.example/mirror/relay:${OPERATOR_VERSION}`,
    );
  });

  it('is on /metrics as sluice_operator_build_info, beside the process metrics under their standard names', async () => {
    const text = await new OperatorMetrics({ processMetrics: true }).registry.metrics();
    assert.match(
      text,
      new RegExp(
        `^sluice_operator_build_info\\{version="${OPERATOR_VERSION}",nodejs_version="[^"]+"\\} 1$`,
        'm',
      ),
    );
    assert.match(text, /^# TYPE process_cpu_seconds_total counter$/m);
    assert.match(text, /^# TYPE nodejs_heap_size_used_bytes gauge$/m);
    assert.doesNotMatch(text, /^sluice_operator_(process|nodejs)_/m);
  });
});
