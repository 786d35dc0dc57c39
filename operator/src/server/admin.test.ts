import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startAdminServer } from './admin.ts';
import { OperatorMetrics } from './metrics.ts';

describe('operator admin server', () => {
  it('answers /healthz, /readyz as the controller reports it, and /metrics', async () => {
    const metrics = new OperatorMetrics();
    let ready = { ok: false, detail: 'leading; caches syncing' };
    let depth = 3;
    metrics.bindQueueDepth(() => depth);
    const admin = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      readiness: () => ready,
    });
    try {
      const base = `http://127.0.0.1:${admin.port}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const notReady = await fetch(`${base}/readyz`);
      assert.equal(notReady.status, 503);
      assert.deepEqual(await notReady.json(), { status: 'not ready', detail: 'leading; caches syncing' });
      ready = { ok: true, detail: 'standby' };
      assert.equal((await fetch(`${base}/readyz`)).status, 200);

      metrics.reconciled('RelayPolicy', 'success', 0.02);
      metrics.reconciled('RelayPolicy', 'error', 0.5);
      metrics.leading(true);
      metrics.kubeWrite('apply');
      metrics.kubeWrite('apply');
      depth = 7;
      const text = await (await fetch(`${base}/metrics`)).text();
      for (const line of [
        'sluice_operator_reconcile_total{kind="RelayPolicy",result="success"} 1',
        'sluice_operator_reconcile_total{kind="RelayPolicy",result="error"} 1',
        'sluice_operator_reconcile_errors_total{kind="RelayPolicy"} 1',
        'sluice_operator_reconcile_duration_seconds_count{kind="RelayPolicy"} 2',
        'sluice_operator_workqueue_depth 7',
        'sluice_operator_leader 1',
        'sluice_operator_kube_writes_total{verb="apply"} 2',
      ]) {
        assert.ok(text.includes(line), `${line} in\n${text}`);
      }
    } finally {
      await admin.close();
    }
  });

  it('binds every interface, IPv4 and IPv6, when no host is given', async () => {
    const admin = await startAdminServer({
      port: 0,
      registry: new OperatorMetrics().registry,
      readiness: () => ({ ok: true, detail: 'standby' }),
    });
    try {
      const bound = admin.server.server.address();
      assert.equal(typeof bound === 'object' && bound ? bound.address : bound, '::');
      for (const host of ['127.0.0.1', '[::1]']) {
        assert.equal((await fetch(`http://${host}:${admin.port}/healthz`)).status, 200, host);
      }
    } finally {
      await admin.close();
    }
  });
});
