// These tests bind every interface on purpose (port 0): that is the behaviour under test.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import { startTestRelay } from '../testing/index.ts';

/** The first line an SMTP server sends to a client connecting from `host`. */
async function greeting(host: string, port: number): Promise<string> {
  const socket = connect({ host, port });
  socket.setEncoding('latin1');
  const [chunk] = (await once(socket, 'data')) as [string];
  socket.destroy();
  return chunk.split('\r\n')[0] ?? '';
}

describe('binding every interface', () => {
  it('a config without addresses serves the admin API and SMTP to IPv4 and IPv6 clients', async (t) => {
    const defaults = validateRelayConfig(
      { listeners: [{ name: 'submission', port: 0 }], spoolDir: 's', usersFile: 'u' },
      'c',
    );
    assert.equal(defaults.admin.address, '::');
    assert.equal(defaults.listeners[0]?.address, '::');

    const relay = await startTestRelay({
      config: { listeners: [{ name: 'plain', port: 0, tls: 'none' }], admin: { port: 0 } },
    });
    t.after(() => relay.close());
    for (const host of ['127.0.0.1', '::1']) {
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${relay.relay.adminPort}/healthz`;
      assert.equal((await fetch(url)).status, 200, `admin over ${host}`);
      assert.match(await greeting(host, relay.port('plain')), /^220 relay\.test /, `SMTP over ${host}`);
    }
  });
});
