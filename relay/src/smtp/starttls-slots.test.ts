// A STARTTLS session gives its connection slot back when it ends: smtp-server takes every
// listener off the plain socket when it upgrades it, the relay's own included.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RawSmtpClient, startTestRelay } from '../testing/index.ts';

describe('connection slots and STARTTLS', () => {
  it('serves more STARTTLS sessions one after another than the per-IP cap', async () => {
    // a cap of 2 leaves room for the previous connection's close still on its way
    const t = await startTestRelay({ config: { limits: { maxConnectionsPerIp: 2 } } });
    try {
      for (let i = 0; i < 6; i++) {
        const c = await RawSmtpClient.connect(t.port('submission'));
        const greeting = await c.greeting();
        assert.equal(greeting.code, 220, `session ${i + 1}: ${greeting.code} ${greeting.text}`);
        await c.ehlo();
        assert.equal((await c.starttls()).code, 250);
        await c.quit();
      }
    } finally {
      await t.close();
    }
  });
});
