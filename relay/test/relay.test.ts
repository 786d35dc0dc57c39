// The relay's outside: admin endpoints, logs an SRE can follow, and shutdown.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PASSWORD, PLAIN_LISTENER, RawSmtpClient, startTestRelay, waitFor } from '../src/testing/index.ts';

describe('relay admin server and logs', () => {
  it('serves /healthz, /readyz with detail and /metrics, and readiness drops on shutdown', async () => {
    const t = await startTestRelay();
    const base = `http://127.0.0.1:${t.relay.adminPort}`;
    try {
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      const detail = (await ready.json()) as { checks: Array<{ name: string; ok: boolean }> };
      assert.deepEqual(
        detail.checks.map((c) => c.name),
        ['draining', 'listeners', 'users', 'state', 'spool', 'own_ip'],
      );
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /# TYPE sluice_smtp_messages_total counter/);
      assert.match(metrics, /sluice_smtp_rejections_total\{reason="blocked_attachment",stage="none"\} 0/);
      // open session keeps the listener busy while the relay drains
      const c = await RawSmtpClient.connect(t.port('submission'));
      await c.greeting();
      const closing = t.relay.close(2000);
      const during = await fetch(`${base}/readyz`);
      assert.equal(during.status, 503);
      assert.deepEqual(((await during.json()) as { checks: unknown[] }).checks[0], {
        name: 'draining',
        ok: false,
        detail: 'draining',
      });
      assert.equal((await c.command('NOOP')).code, 250, 'open sessions are not cut at once');
      await c.quit();
      await closing;
    } finally {
      await t.close().catch(() => undefined);
    }
  });

  it('writes one JSON line per connection, transaction and rejection, correlated by ids', async () => {
    const t = await startTestRelay({
      config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } },
    });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      await c.greeting();
      await c.ehlo();
      await c.authPlain('alice', PASSWORD);
      const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], 'Subject: l\r\n\r\nx\r\n');
      const queueId = replies.at(-1)?.text.split(' ').pop();
      await c.command('MAIL FROM:<alice@example.com> SIZE=999999999999');
      await c.quit();
      await waitFor('the connection line is written', () => t.logs.events('connection').length > 0);
      const accepted = t.logs.events('accepted');
      assert.equal(accepted.length, 1);
      const tx = accepted[0] ?? {};
      assert.equal(tx.queueId, queueId);
      assert.equal(tx.user, 'alice');
      assert.equal(tx.clientIp, '127.0.0.1');
      assert.equal(typeof tx.sessionId, 'string');
      const rejection = t.logs.events('rejected').find((l) => l.reason === 'message_too_big');
      assert.equal(rejection?.sessionId, tx.sessionId);
      assert.equal(rejection?.user, 'alice');
      const connection = t.logs.events('connection').find((l) => l.sessionId === tx.sessionId);
      assert.equal(connection?.messages, 1);
      assert.equal(connection?.rejections, 1);
      assert.equal(connection?.user, 'alice');
      assert.equal(connection?.clientIp, '127.0.0.1');
    } finally {
      await t.close();
    }
  });
});
