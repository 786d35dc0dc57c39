// The real client address behind a load balancer: PROXY protocol v1/v2 per listener,
// read only from trusted networks.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { PASSWORD, RawSmtpClient, startTestRelay, type TestRelay } from '../testing/index.ts';

function v2Header(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addresses = Buffer.alloc(12);
  Buffer.from(src.split('.').map(Number)).copy(addresses, 0);
  Buffer.from(dst.split('.').map(Number)).copy(addresses, 4);
  addresses.writeUInt16BE(srcPort, 8);
  addresses.writeUInt16BE(dstPort, 10);
  const head = Buffer.from([0x21, 0x11, 0x00, 12]);
  return Buffer.concat([signature, head, addresses]);
}

async function sendOne(c: RawSmtpClient): Promise<string> {
  assert.equal((await c.greeting()).code, 220);
  await c.ehlo();
  assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
  const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], 'Subject: p\r\n\r\nx\r\n');
  const last = replies.at(-1);
  assert.equal(last?.code, 250);
  await c.quit();
  return last?.text.split(' ').pop() ?? '';
}

async function clientIpOf(t: TestRelay, queueId: string): Promise<string | undefined> {
  return (await t.queued()).find((m) => m.envelope.queueId === queueId)?.envelope.clientIp;
}

describe('PROXY protocol', () => {
  it('takes the client address from a v1 header sent by a trusted proxy', async () => {
    const t = await startTestRelay({
      config: {
        auth: { allowPlaintext: true },
        listeners: [
          {
            name: 'plain',
            address: '127.0.0.1',
            port: 0,
            tls: 'none',
            proxyProtocol: true,
            trustedProxies: ['127.0.0.0/8'],
          },
        ],
      },
    });
    try {
      const c = await RawSmtpClient.connectWithPreamble(
        t.port('plain'),
        'PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n',
      );
      const queueId = await sendOne(c);
      assert.equal(await clientIpOf(t, queueId), '203.0.113.9');
      const line = t.logs.events('accepted').find((l) => l.queueId === queueId);
      assert.equal(line?.clientIp, '203.0.113.9');
    } finally {
      await t.close();
    }
  });

  it('reads a v2 header before the implicit TLS handshake', async () => {
    const t = await startTestRelay({
      config: {
        listeners: [
          {
            name: 'smtps',
            address: '127.0.0.1',
            port: 0,
            tls: 'implicit',
            proxyProtocol: true,
            trustedProxies: ['127.0.0.1'],
          },
        ],
      },
    });
    try {
      const raw = net.connect(t.port('smtps'), '127.0.0.1');
      await new Promise<void>((resolve) => raw.once('connect', resolve));
      raw.write(v2Header('198.51.100.7', 51000, '127.0.0.1', 465));
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) =>
        secure.once('secureConnect', resolve).once('error', reject),
      );
      const queueId = await sendOne(RawSmtpClient.wrap(secure));
      assert.equal(await clientIpOf(t, queueId), '198.51.100.7');
    } finally {
      await t.close();
    }
  });

  it('does not read a header from an untrusted peer: it is just a bad command there', async () => {
    const t = await startTestRelay({
      config: {
        auth: { allowPlaintext: true },
        listeners: [
          {
            name: 'plain',
            address: '127.0.0.1',
            port: 0,
            tls: 'none',
            proxyProtocol: true,
            trustedProxies: ['10.0.0.0/8'],
          },
        ],
      },
    });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      assert.equal((await c.greeting()).code, 220);
      assert.equal((await c.command('PROXY TCP4 203.0.113.9 127.0.0.1 40000 25')).code, 500);
      await c.ehlo();
      await c.authPlain('alice', PASSWORD);
      const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], 'Subject: p\r\n\r\nx\r\n');
      const queueId = replies.at(-1)?.text.split(' ').pop() ?? '';
      assert.equal(await clientIpOf(t, queueId), '127.0.0.1');
      await c.quit();
    } finally {
      await t.close();
    }
  });

  it('drops a trusted peer that sends no valid header, and keeps serving', async () => {
    const t = await startTestRelay({
      config: {
        auth: { allowPlaintext: true },
        listeners: [
          {
            name: 'plain',
            address: '127.0.0.1',
            port: 0,
            tls: 'none',
            proxyProtocol: true,
            trustedProxies: ['127.0.0.1'],
          },
        ],
      },
    });
    try {
      const c = await RawSmtpClient.connectWithPreamble(t.port('plain'), 'EHLO sneaky.test\r\n');
      await c.waitClosed();
      const ok = await RawSmtpClient.connectWithPreamble(
        t.port('plain'),
        'PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n',
      );
      await sendOne(ok);
    } finally {
      await t.close();
    }
  });
});
