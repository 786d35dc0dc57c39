// Direct delivery never connects into the provider's own network unless configured to:
// address literals, MX hosts and their A/AAAA answers (and the implicit MX of a domain
// without MX records) that are loopback, private, link-local (cloud metadata), CGNAT or
// IPv4 ones carried in IPv6 are refused and the mail bounces with 5.4.4. A real DNS
// server on loopback gives the answers; real SMTP sinks on 127.0.0.x stand where such an
// answer points, and must see no connection.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { validateRelayConfig } from '../config/validate.ts';
import { createLogger } from '../observability/logger.ts';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { LogCapture, PASSWORD, PLAIN_LISTENER, startTestRelay } from '../testing/harness.ts';
import { type SmtpSink, startSmtpSink } from '../testing/smtp-sink.ts';
import { waitFor } from '../testing/wait-for.ts';
import { SmtpTransport } from './smtp-transport.ts';
import type { RecipientResult } from './types.ts';

const BODY = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: hello\r\n\r\nHello there.\r\n';

let dns: TestDnsServer;
let dir: string;
let bodyPath: string;
/** Where internal answers point: 127.0.0.2 (also reached as ::ffff:127.0.0.2). */
let inside: SmtpSink;
/** An MX host on 127.0.0.3, same port, for allowedNetworks. */
let allowed: SmtpSink;
let seq = 0;

before(async () => {
  dns = await startDnsServer();
  dir = await mkdtemp(join(tmpdir(), 'sluice-internal-'));
  bodyPath = join(dir, 'plain.eml');
  await writeFile(bodyPath, BODY);
  inside = await startSmtpSink({ host: '127.0.0.2' });
  allowed = await startSmtpSink({ host: '127.0.0.3', port: inside.port });
});
after(async () => {
  await inside.close();
  await allowed.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

async function deliver(
  domain: string,
  delivery: Record<string, unknown> = {},
): Promise<{ result: RecipientResult; logs: LogCapture }> {
  const logs = new LogCapture();
  const config = validateRelayConfig(
    {
      listeners: [{ name: 'submission', address: '127.0.0.1', port: 0 }],
      spoolDir: join(dir, 'spool'),
      usersFile: join(dir, 'users.yaml'),
      delivery: {
        resolvers: [dns.address],
        port: inside.port,
        allowLocalAddresses: false,
        connectTimeoutSeconds: 5,
        ...delivery,
      },
    },
    'test config',
  ).delivery;
  const t = new SmtpTransport({
    mode: 'direct',
    config,
    hostname: 'relay.test',
    logger: createLogger({ level: 'debug', destination: logs }),
  });
  try {
    seq++;
    const results = await t.deliver({
      queueId: `I${seq}`,
      sender: 'a@sender.test',
      recipients: [`u@${domain}`],
      domain,
      bodyPath,
      size: Buffer.byteLength(BODY),
    });
    assert.equal(results.length, 1);
    const [result] = results;
    assert.ok(result);
    return { result, logs };
  } finally {
    await t.close();
  }
}

describe('direct delivery to addresses inside the network', () => {
  it('bounces an IPv4-mapped loopback address literal (5.4.4) and connects nowhere', async () => {
    const before = inside.connections;
    const { result } = await deliver('[IPv6:::ffff:127.0.0.2]');
    assert.deepEqual([result.outcome, result.status], ['bounced', '5.4.4']);
    assert.match(result.response, /not a globally routable address \(ipv4Mapped:loopback\)/);
    assert.equal(inside.connections, before, 'the sink behind the literal saw no connection');
    // the same literal does reach the sink when local addresses are allowed
    const open = await deliver('[IPv6:::ffff:127.0.0.2]', { allowLocalAddresses: true });
    assert.equal(open.result.outcome, 'delivered', open.result.response);
  });

  it('bounces a domain whose MX answers only internal A/AAAA records, without trying one', async () => {
    dns.setMx('metadata.test', [
      { exchange: 'mx1.metadata.test', priority: 10 },
      { exchange: 'mx2.metadata.test', priority: 20 },
    ]);
    dns.setA('mx1.metadata.test', ['169.254.169.254', '100.64.0.1', '10.0.0.1', '::ffff:127.0.0.2']);
    dns.setA('mx2.metadata.test', ['127.0.0.2', '::1', 'fd00::1', '64:ff9b::7f00:2', '2002:7f00:2::1']);
    const before = inside.connections;
    const { result, logs } = await deliver('metadata.test');
    assert.deepEqual([result.outcome, result.status], ['bounced', '5.4.4']);
    assert.match(result.response, /every MX address of metadata\.test is one this relay does not deliver to/);
    assert.match(result.response, /mx1\.metadata\.test\[169\.254\.169\.254\] linkLocal/);
    assert.equal(inside.connections, before);
    assert.deepEqual(logs.events('delivery_connect_failed'), [], 'no connection was attempted');
    const [refusal] = logs.events('delivery_address_refused');
    const refused = ((refusal?.refused ?? []) as Array<{ address: string; range: string }>).map(
      (r) => `${r.address} ${r.range}`,
    );
    assert.deepEqual(refused.sort(), [
      '10.0.0.1 private',
      '100.64.0.1 carrierGradeNat',
      '127.0.0.2 loopback',
      '169.254.169.254 linkLocal',
      '2002:7f00:2::1 6to4:loopback',
      '64:ff9b::7f00:2 nat64:loopback',
      '::1 loopback',
      '::ffff:127.0.0.2 ipv4Mapped:loopback',
      'fd00::1 uniqueLocal',
    ]);
  });

  it('applies the same check to the implicit MX of a domain without MX records', async () => {
    dns.setA('implicit.test', ['127.0.0.2', '::ffff:127.0.0.2']);
    const before = inside.connections;
    const { result } = await deliver('implicit.test');
    assert.deepEqual([result.outcome, result.status], ['bounced', '5.4.4']);
    assert.equal(inside.connections, before);
  });

  it('skips internal MX hosts and delivers to one in delivery.allowedNetworks', async () => {
    dns.setMx('partly.test', [
      { exchange: 'mx1.partly.test', priority: 10 },
      { exchange: 'mx2.partly.test', priority: 20 },
    ]);
    dns.setA('mx1.partly.test', ['127.0.0.2']);
    dns.setA('mx2.partly.test', ['127.0.0.3']);
    const before = inside.connections;
    const { result } = await deliver('partly.test', { allowedNetworks: ['127.0.0.3/32'] });
    assert.equal(result.outcome, 'delivered', result.response);
    assert.equal(result.remoteHost, 'mx2.partly.test');
    assert.equal(inside.connections, before, 'the internal MX of higher preference was not tried');
    assert.deepEqual(allowed.messages.at(-1)?.recipients, ['u@partly.test']);
  });

  it('defers (4.4.3) when the other MX hosts are internal and one fails to resolve', async () => {
    dns.setMx('flaky.test', [
      { exchange: 'mx1.flaky.test', priority: 10 },
      { exchange: 'mx2.flaky.test', priority: 20 },
    ]);
    dns.setBehaviour('mx1.flaky.test', 'servfail');
    dns.setA('mx2.flaky.test', ['10.1.2.3']);
    const { result } = await deliver('flaky.test');
    assert.deepEqual([result.outcome, result.status], ['deferred', '4.4.3']);
  });
});

describe('a relay asked to deliver to an internal address literal', () => {
  it('bounces the recipient to the sender with 5.4.4; the sink behind the literal gets nothing', async () => {
    const senderMx = await startSmtpSink({ host: '127.0.0.4', port: inside.port });
    dns.setMx('sender.test', [{ exchange: 'mx.sender.test', priority: 10 }]);
    dns.setA('mx.sender.test', ['127.0.0.4']);
    let relay: Awaited<ReturnType<typeof startTestRelay>> | undefined;
    try {
      relay = await startTestRelay({
        deliver: true,
        config: {
          listeners: [PLAIN_LISTENER],
          auth: { allowPlaintext: true },
          // the sender's MX is on loopback too: allowed by address so its bounce can arrive
          delivery: { resolvers: [dns.address], port: inside.port, allowedNetworks: ['127.0.0.4'] },
        },
      });
      const started = relay;
      const before = inside.connections;
      await nodemailer
        .createTransport({
          host: '127.0.0.1',
          port: started.port('plain'),
          ignoreTLS: true,
          auth: { user: 'alice', pass: PASSWORD },
        })
        .sendMail({
          envelope: { from: 'alice@sender.test', to: ['u@[IPv6:::ffff:127.0.0.2]'] },
          raw: BODY,
        });
      await senderMx.waitForMessages(1, 10_000);
      const text = senderMx.messages[0]?.raw.toString() ?? '';
      assert.match(text, /Action: failed\r\nStatus: 5\.4\.4/);
      assert.match(
        text,
        /Diagnostic-Code: X-Sluice; .* not a globally routable\s+address \(ipv4Mapped:loopback\)/,
      );
      await waitFor('the queue is empty after the bounce', () => started.relay.delivery?.size === 0);
      assert.equal(inside.connections, before, 'nothing connected to the loopback sink');
    } finally {
      await relay?.close();
      await senderMx.close();
    }
  });
});
