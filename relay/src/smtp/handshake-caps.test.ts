// Connections still in their implicit TLS handshake count against the per-IP and total
// connection caps, and a handshake that never completes is closed after
// limits.handshakeTimeoutSeconds.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import { RawSmtpClient, startTestRelay, type TestRelay, waitFor } from '../testing/index.ts';

/** A TCP connection that never sends a ClientHello. */
function silent(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    socket.once('connect', () => resolve(socket)).once('error', reject);
  });
}

/** Resolves when the server has closed the socket; rejects after timeoutMs. */
function closedByServer(socket: net.Socket, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || socket.readableEnded) return resolve();
    const timer = setTimeout(() => reject(new Error('connection still open')), timeoutMs);
    socket.resume();
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', () => undefined);
  });
}

/** Whether an implicit TLS client from that address gets the 220 greeting. */
async function greeted(t: TestRelay, localAddress = '127.0.0.1'): Promise<boolean> {
  try {
    const c = await RawSmtpClient.connect(t.port('smtps'), { tls: true, localAddress });
    const ok = (await c.greeting()).code === 220;
    c.destroy();
    return ok;
  } catch {
    return false;
  }
}

describe('connections in the implicit TLS handshake', () => {
  it('count against the per-IP cap: the ones beyond it are closed at once', async () => {
    const t = await startTestRelay({ config: { limits: { maxConnectionsPerIp: 3 } } });
    const pending: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) pending.push(await silent(t.port('smtps')));
      const over = await silent(t.port('smtps'));
      await closedByServer(over);
      assert.equal(await greeted(t), false, 'a TLS client from the same address is refused too');
      // the cap is the relay's: the STARTTLS listener sees it as well
      const c = await RawSmtpClient.connect(t.port('submission'));
      const refused = await c.greeting();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0 .*Too many connections from your address/);
      await c.waitClosed();
      assert.equal(await greeted(t, '127.0.0.2'), true, 'another address is served');
      const rejected = t.logs.events('rejected').filter((l) => l.reason === 'too_many_connections_ip');
      assert.ok(rejected.some((l) => l.clientIp === '127.0.0.1' && l.stage === 'connect'));
      // a slot comes free when a pending connection goes
      pending.shift()?.destroy();
      await waitFor('a TLS client is served again', () => greeted(t));
    } finally {
      for (const s of pending) s.destroy();
      await t.close();
    }
  });

  it('count against the total cap', async () => {
    const t = await startTestRelay({ config: { limits: { maxConnections: 2 } } });
    const pending: net.Socket[] = [];
    try {
      pending.push(await silent(t.port('smtps'), '127.0.0.2'));
      pending.push(await silent(t.port('smtps'), '127.0.0.3'));
      await closedByServer(await silent(t.port('smtps'), '127.0.0.4'));
      const c = await RawSmtpClient.connect(t.port('submission'), { localAddress: '127.0.0.5' });
      const refused = await c.greeting();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0 .*Too many connections, try again/);
    } finally {
      for (const s of pending) s.destroy();
      await t.close();
    }
  });

  it('are closed after the handshake timeout, and give their slot back', async () => {
    const t = await startTestRelay({
      config: { limits: { maxConnectionsPerIp: 1, handshakeTimeoutSeconds: 1 } },
    });
    try {
      const stalled = await silent(t.port('smtps'));
      await closedByServer(stalled);
      await waitFor('the handshake timeout is logged', () =>
        t.logs.events('connection_refused').some((l) => l.err === 'TLS handshake timed out'),
      );
      await waitFor('the slot is free again', () => greeted(t));
    } finally {
      await t.close();
    }
  });

  it('have a bounded, configurable handshake timeout', () => {
    const base = { listeners: [{ name: 'a', port: 0 }], spoolDir: 's', usersFile: 'u' };
    assert.equal(validateRelayConfig(base, 'test').limits.handshakeTimeoutSeconds, 10);
    for (const value of [0, 61]) {
      assert.throws(
        () => validateRelayConfig({ ...base, limits: { handshakeTimeoutSeconds: value } }, 'test'),
        /limits\.handshakeTimeoutSeconds/,
      );
    }
  });
});
