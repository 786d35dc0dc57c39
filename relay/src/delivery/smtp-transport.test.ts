import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { RelayConfig } from '../config/schema.ts';
import { validateRelayConfig } from '../config/validate.ts';
import { isSluiceError } from '../errors.ts';
import { createLogger } from '../observability/logger.ts';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { LogCapture } from '../testing/harness.ts';
import { type SmtpSink, type SmtpSinkOptions, startSmtpSink } from '../testing/smtp-sink.ts';
import { waitFor } from '../testing/wait-for.ts';
import { parseReply, SmtpTransport, type SmtpTransportOptions } from './smtp-transport.ts';
import type { DeliveryJob, RecipientResult } from './types.ts';

// Real SMTP sinks on 127.0.0.x stand in for MX hosts and smarthosts; a real DNS server on
// loopback answers the MX and address lookups.

const BODY = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: hello\r\n\r\nHello there.\r\n';

let dns: TestDnsServer;
let dir: string;
let bodyPath: string;
let seq = 0;

before(async () => {
  dns = await startDnsServer();
  dir = await mkdtemp(join(tmpdir(), 'sluice-delivery-'));
  bodyPath = join(dir, 'plain.eml');
  await writeFile(bodyPath, BODY);
});
after(async () => {
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function deliveryConfig(delivery: Record<string, unknown>): RelayConfig['delivery'] {
  return validateRelayConfig(
    {
      listeners: [{ name: 'submission', address: '127.0.0.1', port: 0 }],
      spoolDir: join(dir, 'spool'),
      usersFile: join(dir, 'users.yaml'),
      delivery: {
        resolvers: [dns.address],
        allowLocalAddresses: true,
        connectTimeoutSeconds: 5,
        ...delivery,
      },
    },
    'test config',
  ).delivery;
}

function transport(
  delivery: Record<string, unknown>,
  extra: Partial<SmtpTransportOptions> = {},
): { transport: SmtpTransport; logs: LogCapture } {
  const logs = new LogCapture();
  const config = deliveryConfig(delivery);
  const t = new SmtpTransport({
    mode: config.mode,
    config,
    hostname: 'relay.test',
    logger: createLogger({ level: 'debug', destination: logs }),
    ...extra,
  });
  return { transport: t, logs };
}

function job(domain: string, recipients: string[], extra: Partial<DeliveryJob> = {}): DeliveryJob {
  seq++;
  return {
    queueId: `Q${seq}`,
    sender: 'a@sender.test',
    recipients,
    domain,
    bodyPath,
    size: Buffer.byteLength(BODY),
    ...extra,
  };
}

/** A domain whose single MX is `host` (an address on loopback). */
function mxAt(domain: string, host: string): void {
  dns.setMx(domain, [{ exchange: `mx.${domain}`, priority: 10 }]);
  dns.setA(`mx.${domain}`, [host]);
}

async function withSink<T>(options: SmtpSinkOptions, run: (sink: SmtpSink) => Promise<T>): Promise<T> {
  const sink = await startSmtpSink(options);
  try {
    return await run(sink);
  } finally {
    await sink.close();
  }
}

/** A transport (`delivery` in its config, `extra` in its options), closed after run. */
async function withTransport<T>(
  delivery: Record<string, unknown>,
  run: (made: { t: SmtpTransport; logs: LogCapture }) => Promise<T>,
  extra: Partial<SmtpTransportOptions> = {},
): Promise<T> {
  const { transport: t, logs } = transport(delivery, extra);
  try {
    return await run({ t, logs });
  } finally {
    await t.close();
  }
}

/**
 * A sink on `sink.host` as the single MX of `domain`, and a transport that delivers there
 * (the sink's port, plus `delivery` in its config); both are closed after `run`.
 */
function withMx<T>(
  options: {
    domain: string;
    sink: SmtpSinkOptions & { host: string };
    delivery?: Record<string, unknown>;
    transport?: Partial<SmtpTransportOptions>;
  },
  run: (mx: { sink: SmtpSink; t: SmtpTransport; logs: LogCapture }) => Promise<T>,
): Promise<T> {
  return withSink(options.sink, (sink) => {
    mxAt(options.domain, options.sink.host);
    return withTransport(
      { port: sink.port, ...options.delivery },
      (x) => run({ sink, ...x }),
      options.transport,
    );
  });
}

function only(results: RecipientResult[]): RecipientResult {
  assert.equal(results.length, 1);
  const [result] = results;
  assert.ok(result);
  return result;
}

describe('SmtpTransport, direct to MX', () => {
  it('tries MX hosts by priority: the first is down, the second gets the message', async () => {
    await withSink({ host: '127.0.0.3' }, async (sink) => {
      dns.setMx('two.test', [
        { exchange: 'mx2.two.test', priority: 20 },
        { exchange: 'mx1.two.test', priority: 10 },
      ]);
      dns.setA('mx1.two.test', ['127.0.0.2']); // nothing listens there
      dns.setA('mx2.two.test', ['127.0.0.3']);
      const { transport: t } = transport({ port: sink.port });
      try {
        const result = only(await t.deliver(job('two.test', ['bob@two.test'])));
        assert.equal(result.outcome, 'delivered');
        assert.equal(result.status, '2.0.0');
        assert.equal(result.remoteHost, 'mx2.two.test');
        assert.match(result.response, /^250 /);
        assert.equal(sink.messages.length, 1);
        assert.deepEqual(sink.messages[0]?.recipients, ['bob@two.test']);
        assert.equal(sink.messages[0]?.sender, 'a@sender.test');
        assert.equal(sink.messages[0]?.raw.toString(), BODY);
      } finally {
        await t.close();
      }
    });
  });

  it('moves on to the next MX host when one refuses the session (421 greeting)', async () => {
    await withSink({ host: '127.0.0.3' }, async (sink) => {
      const busy = net.createServer((socket) => socket.end('421 4.3.2 busy, try another\r\n'));
      await new Promise<void>((resolve) => busy.listen(sink.port, '127.0.0.2', resolve));
      try {
        dns.setMx('busy.test', [
          { exchange: 'mx1.busy.test', priority: 10 },
          { exchange: 'mx2.busy.test', priority: 20 },
        ]);
        dns.setA('mx1.busy.test', ['127.0.0.2']);
        dns.setA('mx2.busy.test', ['127.0.0.3']);
        await withTransport({ port: sink.port }, async ({ t }) => {
          const result = only(await t.deliver(job('busy.test', ['a@busy.test'])));
          assert.equal(result.outcome, 'delivered');
          assert.equal(result.remoteHost, 'mx2.busy.test');
        });

        dns.setMx('busy.test', [{ exchange: 'mx1.busy.test', priority: 10 }]);
        const { transport: t2 } = transport({ port: sink.port });
        const refused = only(await t2.deliver(job('busy.test', ['a@busy.test'])));
        assert.deepEqual(
          [refused.outcome, refused.status, refused.remoteHost],
          ['deferred', '4.3.2', 'mx1.busy.test'],
        );
        assert.match(refused.response, /421 4\.3\.2 busy/);
        await t2.close();
      } finally {
        await new Promise((resolve) => busy.close(resolve));
      }
    });
  });

  it('delivers to the domain itself when it has an address but no MX (implicit MX)', async () => {
    await withSink({ host: '127.0.0.2' }, async (sink) => {
      dns.setA('implicit.test', ['127.0.0.2']);
      const { transport: t } = transport({ port: sink.port });
      try {
        const result = only(await t.deliver(job('implicit.test', ['x@implicit.test'])));
        assert.equal(result.outcome, 'delivered');
        assert.equal(result.remoteHost, 'implicit.test');
        assert.equal(sink.messages.length, 1);
      } finally {
        await t.close();
      }
    });
  });

  it('bounces every recipient of a null-MX domain with 5.1.10', async () => {
    dns.setMx('nullmx.test', [{ exchange: '.', priority: 0 }]);
    await withTransport({}, async ({ t, logs }) => {
      const results = await t.deliver(job('nullmx.test', ['a@nullmx.test', 'b@nullmx.test']));
      assert.deepEqual(
        results.map((r) => [r.address, r.outcome, r.status]),
        [
          ['a@nullmx.test', 'bounced', '5.1.10'],
          ['b@nullmx.test', 'bounced', '5.1.10'],
        ],
      );
      assert.match(results[0]?.response ?? '', /nullmx\.test does not accept mail \(null MX/);
      assert.deepEqual(
        results.map((r) => r.reason),
        ['null_mx', 'null_mx'],
        'the cause, for the queue to log with the attempt',
      );
      // the queue logs the attempt; the transport only adds detail at debug level
      assert.deepEqual(
        logs.lines.map((l) => [l.level, l.event, l.reason]),
        [['debug', 'transport_result', 'null_mx']],
      );
    });
  });

  it('bounces a domain that does not exist with 5.1.2', async () => {
    await withTransport({}, async ({ t }) => {
      const result = only(await t.deliver(job('no-such-domain.test', ['a@no-such-domain.test'])));
      assert.equal(result.outcome, 'bounced');
      assert.equal(result.status, '5.1.2');
    });
  });

  it('defers when the MX lookup fails (SERVFAIL) with 4.4.3', async () => {
    dns.setBehaviour('servfail.test', 'servfail');
    await withTransport({}, async ({ t }) => {
      const result = only(await t.deliver(job('servfail.test', ['a@servfail.test'])));
      assert.equal(result.outcome, 'deferred');
      assert.equal(result.status, '4.4.3');
      assert.match(result.response, /SERVFAIL/);
    });
  });

  it('defers with 4.4.1 when no MX host accepts a connection', async () => {
    mxAt('down.test', '127.0.0.2');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((resolve) => server.close(resolve)); // a port nobody listens on now
    await withTransport({ port }, async ({ t }) => {
      const result = only(await t.deliver(job('down.test', ['a@down.test'])));
      assert.equal(result.outcome, 'deferred');
      assert.equal(result.status, '4.4.1');
    });
  });

  it('refuses MX hosts on loopback or private addresses unless allowed: bounced 5.4.4', async () => {
    await withMx(
      { domain: 'local.test', sink: { host: '127.0.0.2' }, delivery: { allowLocalAddresses: false } },
      async ({ sink, t }) => {
        const result = only(await t.deliver(job('local.test', ['a@local.test'])));
        assert.equal(result.outcome, 'bounced');
        assert.equal(result.status, '5.4.4');
        assert.match(
          result.response,
          /every MX address of local\.test .*mx\.local\.test\[127\.0\.0\.2\] loopback/,
        );
        assert.equal(sink.connections, 0, 'no connection was made');
      },
    );
  });

  it('bounces (5.4.4) an address literal on a loopback or private address unless allowed', async () => {
    await withSink({ host: '127.0.0.2' }, async (sink) => {
      await withTransport({ port: sink.port, allowLocalAddresses: false }, async ({ t }) => {
        const result = only(await t.deliver(job('[127.0.0.2]', ['a@[127.0.0.2]'])));
        assert.deepEqual([result.outcome, result.status], ['bounced', '5.4.4']);
        assert.match(result.response, /\[127\.0\.0\.2\] is not a globally routable address \(loopback\)/);
      });
      await withTransport({ port: sink.port, allowLocalAddresses: true }, async ({ t }) => {
        const result = only(await t.deliver(job('[127.0.0.2]', ['a@[127.0.0.2]'])));
        assert.equal(result.outcome, 'delivered', result.response);
      });
      assert.equal(sink.messages.length, 1);
    });
  });

  it('gives each recipient its own answer: 250, 451 and 550 in one transaction', async () => {
    await withMx({ domain: 'mixed.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      sink.setRecipientReply('later@mixed.test', { code: 451, text: '4.2.1 try later' });
      sink.setRecipientReply('gone@mixed.test', { code: 550, text: '5.1.1 no such user' });
      const results = await t.deliver(
        job('mixed.test', ['ok@mixed.test', 'later@mixed.test', 'gone@mixed.test']),
      );
      assert.deepEqual(
        results.map((r) => [r.address, r.outcome, r.status, r.response, r.remoteHost]),
        [
          ['ok@mixed.test', 'delivered', '2.0.0', results[0]?.response, 'mx.mixed.test'],
          ['later@mixed.test', 'deferred', '4.2.1', '451 4.2.1 try later', 'mx.mixed.test'],
          ['gone@mixed.test', 'bounced', '5.1.1', '550 5.1.1 no such user', 'mx.mixed.test'],
        ],
      );
      assert.equal(sink.messages.length, 1);
      assert.deepEqual(sink.messages[0]?.recipients, ['ok@mixed.test']);
    });
  });

  it('asks for SMTPUTF8 for an internationalised address, and bounces 5.6.7 where it is not offered', async () => {
    await withMx({ domain: 'utf8.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      const result = only(
        await t.deliver(job('utf8.test', ['zoë@utf8.test'], { sender: 'jörg@sender.test' })),
      );
      assert.equal(result.outcome, 'delivered', result.response);
      assert.deepEqual(
        sink.messages.map((m) => [m.sender, m.recipients, m.smtpUtf8]),
        [['jörg@sender.test', ['zoë@utf8.test'], true]],
      );
    });
    await withMx(
      { domain: 'ascii.test', sink: { host: '127.0.0.2', smtpUtf8: false } },
      async ({ sink, t }) => {
        const results = await t.deliver(job('ascii.test', ['zoë@ascii.test', 'bob@ascii.test']));
        assert.deepEqual(
          results.map((r) => [r.address, r.outcome, r.status, r.reason, r.remoteHost]),
          [
            ['zoë@ascii.test', 'bounced', '5.6.7', 'smtputf8_not_offered', 'mx.ascii.test'],
            ['bob@ascii.test', 'bounced', '5.6.7', 'smtputf8_not_offered', 'mx.ascii.test'],
          ],
        );
        assert.match(results[0]?.response ?? '', /mx\.ascii\.test does not offer SMTPUTF8/);
        assert.equal(sink.transactions, 0, 'no MAIL FROM was sent');
        // an ASCII envelope goes there as before, on the same connection
        const plain = only(await t.deliver(job('ascii.test', ['bob@ascii.test'])));
        assert.equal(plain.outcome, 'delivered');
        assert.deepEqual(
          sink.messages.map((m) => [m.recipients, m.smtpUtf8]),
          [[['bob@ascii.test'], false]],
        );
        assert.equal(sink.connections, 1);
      },
    );
  });

  it('declares SMTPUTF8 for a client that did, and bounces only a message that needs it', async () => {
    await withMx({ domain: 'utf8.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      // ASCII addresses: the client's declaration is passed on where the server offers it
      for (const smtpUtf8 of ['declared', 'needed'] as const) {
        const result = only(await t.deliver(job('utf8.test', ['bob@utf8.test'], { smtpUtf8 })));
        assert.equal(result.outcome, 'delivered', result.response);
      }
      const plain = only(await t.deliver(job('utf8.test', ['bob@utf8.test'])));
      assert.equal(plain.outcome, 'delivered');
      assert.deepEqual(
        sink.messages.map((m) => m.smtpUtf8),
        [true, true, false],
      );
    });
    await withMx(
      { domain: 'ascii.test', sink: { host: '127.0.0.2', smtpUtf8: false } },
      async ({ sink, t }) => {
        // UTF-8 in the header (needed) cannot go there; a mere declaration can, without it
        const needed = only(await t.deliver(job('ascii.test', ['bob@ascii.test'], { smtpUtf8: 'needed' })));
        assert.deepEqual(
          [needed.outcome, needed.status, needed.reason],
          ['bounced', '5.6.7', 'smtputf8_not_offered'],
        );
        assert.match(needed.response, /addresses or header need/);
        const declared = only(
          await t.deliver(job('ascii.test', ['bob@ascii.test'], { smtpUtf8: 'declared' })),
        );
        assert.equal(declared.outcome, 'delivered', declared.response);
        assert.deepEqual(
          sink.messages.map((m) => m.smtpUtf8),
          [false],
        );
      },
    );
  });

  it('passes each recipient its own DSN request where the next hop offers DSN', async () => {
    const dsn = {
      ret: 'HDRS' as const,
      envid: 'ENV 1+2',
      recipients: {
        'a@dsn.test': { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;A@dsn.test' },
        'b@dsn.test': { notify: ['NEVER'] },
      },
    };
    await withMx({ domain: 'dsn.test', sink: { host: '127.0.0.2', dsn: true } }, async ({ sink, t }) => {
      const results = await t.deliver(job('dsn.test', ['a@dsn.test', 'b@dsn.test', 'c@dsn.test'], { dsn }));
      assert.deepEqual(
        results.map((r) => [r.address, r.outcome, r.dsnPassed]),
        [
          ['a@dsn.test', 'delivered', true],
          ['b@dsn.test', 'delivered', true],
          ['c@dsn.test', 'delivered', true],
        ],
      );
      assert.deepEqual(sink.messages[0]?.dsn, {
        ret: 'HDRS',
        envid: 'ENV 1+2',
        recipients: {
          'a@dsn.test': { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;A@dsn.test' },
          'b@dsn.test': { notify: ['NEVER'] },
        },
      });
    });
    // a next hop without DSN gets none of it, and the relay keeps the duty to report
    await withMx({ domain: 'dsn.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      const result = only(await t.deliver(job('dsn.test', ['a@dsn.test'], { dsn })));
      assert.equal(result.outcome, 'delivered');
      assert.equal(result.dsnPassed, undefined);
      assert.equal(sink.messages[0]?.dsn, undefined);
    });
  });

  it('sends no DATA when no recipient was accepted', async () => {
    await withMx({ domain: 'none.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      sink.setRecipientReply('a@none.test', { code: 550, text: '5.1.1 no such user' });
      sink.setRecipientReply('b@none.test', { code: 452, text: '4.5.3 too many recipients' });
      const results = await t.deliver(job('none.test', ['a@none.test', 'b@none.test']));
      assert.deepEqual(
        results.map((r) => [r.outcome, r.status]),
        [
          ['bounced', '5.1.1'],
          ['deferred', '4.5.3'],
        ],
      );
      assert.equal(sink.messages.length, 0);
    });
  });

  it('applies the reply at end of DATA to every accepted recipient', async () => {
    await withMx({ domain: 'data.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      sink.setRecipientReply('gone@data.test', { code: 550, text: '5.1.1 no such user' });
      sink.setDataReply({ code: 554, text: '5.6.0 content rejected' });
      const results = await t.deliver(job('data.test', ['a@data.test', 'b@data.test', 'gone@data.test']));
      assert.deepEqual(
        results.map((r) => [r.address, r.outcome, r.status, r.response]),
        [
          ['a@data.test', 'bounced', '5.6.0', '554 5.6.0 content rejected'],
          ['b@data.test', 'bounced', '5.6.0', '554 5.6.0 content rejected'],
          ['gone@data.test', 'bounced', '5.1.1', '550 5.1.1 no such user'],
        ],
      );
      sink.setDataReply({ code: 451, text: '4.3.0 queue full' });
      const later = await t.deliver(job('data.test', ['a@data.test']));
      assert.deepEqual(
        later.map((r) => [r.outcome, r.status]),
        [['deferred', '4.3.0']],
      );
      sink.setDataReply(undefined);
      const fine = await t.deliver(job('data.test', ['a@data.test']));
      assert.equal(fine[0]?.outcome, 'delivered', 'the connection is still good after refusals');
      assert.equal(sink.messages.length, 1);
      assert.equal(sink.connections, 1);
    });
  });

  it('sends the null sender as MAIL FROM:<>', async () => {
    await withMx({ domain: 'bounce.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      const result = only(await t.deliver(job('bounce.test', ['a@bounce.test'], { sender: '' })));
      assert.equal(result.outcome, 'delivered');
      assert.equal(sink.messages[0]?.sender, '');
    });
  });

  it('uses STARTTLS when the MX offers it, whatever its certificate', async () => {
    await withMx(
      { domain: 'tls.test', sink: { host: '127.0.0.2', tls: true }, delivery: { requireTls: true } },
      async ({ sink, t }) => {
        const result = only(await t.deliver(job('tls.test', ['a@tls.test'])));
        assert.equal(result.outcome, 'delivered');
        assert.equal(sink.messages[0]?.tls, true);
      },
    );
  });

  it('with requireTls, defers (4.7.10) instead of sending in clear to an MX without STARTTLS', async () => {
    await withMx(
      { domain: 'cleartext.test', sink: { host: '127.0.0.2' }, delivery: { requireTls: true } },
      async ({ sink, t }) => {
        const result = only(await t.deliver(job('cleartext.test', ['a@cleartext.test'])));
        assert.equal(result.outcome, 'deferred');
        assert.equal(result.status, '4.7.10');
        assert.equal(result.response, 'TLS required but not offered by mx.cleartext.test');
        assert.equal(result.remoteHost, 'mx.cleartext.test');
        assert.equal(sink.transactions, 0);
        assert.equal(sink.messages.length, 0);
      },
    );
  });

  it('sends in clear to an MX without STARTTLS when TLS is not required', async () => {
    await withMx({ domain: 'plain.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      assert.equal(only(await t.deliver(job('plain.test', ['a@plain.test']))).outcome, 'delivered');
      assert.equal(sink.messages[0]?.tls, false);
    });
  });

  it('sends the EHLO name from heloName, else the hostname', async () => {
    const seen: string[] = [];
    const server = net.createServer((socket) => {
      socket.write('220 helo.test ESMTP\r\n');
      socket.on('data', (chunk) => {
        const line = chunk.toString('latin1');
        if (/^EHLO /i.test(line)) {
          seen.push(line.trim().slice(5));
          socket.end('421 4.3.2 not today\r\n');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      mxAt('helo.test', '127.0.0.2');
      for (const delivery of [{ port }, { port, heloName: 'out.relay.test' }]) {
        await withTransport(delivery, async ({ t }) => {
          const result = only(await t.deliver(job('helo.test', ['a@helo.test'])));
          assert.equal(result.outcome, 'deferred');
          assert.equal(result.status, '4.3.2');
        });
      }
      assert.deepEqual(seen, ['relay.test', 'out.relay.test']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('defers the recipients (4.4.2) when the connection drops during DATA, never delivered', async () => {
    // A server that takes the envelope and hangs up while the message is on its way.
    const server = net.createServer((socket) => {
      socket.write('220 drop.test ESMTP\r\n');
      let buffer = '';
      let inData = false;
      socket.on('data', (chunk) => {
        if (inData) {
          socket.destroy();
          return;
        }
        buffer += chunk.toString('latin1');
        for (let end = buffer.indexOf('\r\n'); end !== -1; end = buffer.indexOf('\r\n')) {
          const command = buffer.slice(0, 4).toUpperCase();
          buffer = buffer.slice(end + 2);
          if (command === 'EHLO') socket.write('250 drop.test\r\n');
          else if (command === 'DATA') {
            inData = true;
            socket.write('354 go ahead\r\n');
          } else socket.write('250 2.1.0 ok\r\n');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      mxAt('drop.test', '127.0.0.2');
      await withTransport({ port }, async ({ t }) => {
        const results = await t.deliver(job('drop.test', ['a@drop.test', 'b@drop.test']));
        assert.deepEqual(
          results.map((r) => [r.outcome, r.status, r.remoteHost]),
          [
            ['deferred', '4.4.2', 'mx.drop.test'],
            ['deferred', '4.4.2', 'mx.drop.test'],
          ],
        );
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('defers (4.3.0) when the spooled body cannot be read, without rejecting', async () => {
    mxAt('nobody.test', '127.0.0.2');
    await withTransport({}, async ({ t }) => {
      const result = only(
        await t.deliver(job('nobody.test', ['a@nobody.test'], { bodyPath: join(dir, 'missing.eml') })),
      );
      assert.equal(result.outcome, 'deferred');
      assert.equal(result.status, '4.3.0');
    });
  });
});

describe('SmtpTransport, message data', () => {
  /** Delivers a spooled body from a file to a sink; what the sink got, byte for byte. */
  async function deliverBody(
    domain: string,
    body: string,
    extra: Partial<DeliveryJob> = {},
  ): Promise<string> {
    const path = join(dir, `${domain}-${extra.crlfOnly ?? 'unknown'}.eml`);
    await writeFile(path, body);
    return withMx({ domain, sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      const delivery = job(domain, [`a@${domain}`], { bodyPath: path, size: body.length, ...extra });
      assert.equal(only(await t.deliver(delivery)).outcome, 'delivered');
      assert.equal(sink.messages.length, 1, 'one message, not cut short');
      assert.equal(sink.transactions, 1);
      return sink.messages[0]?.raw.toString('latin1') ?? '';
    });
  }

  for (const crlfOnly of [true, false]) {
    it(`dot-stuffs the body so a "." line in the middle arrives as text, not as the end (${crlfOnly ? 'CRLF-only spool' : 'older spool, checked'})`, async () => {
      const body =
        'Subject: dots\r\n\r\nfirst\r\n.\r\n.leading dot\r\n..two dots\r\n.\r\nQUIT\r\nlast line\r\n';
      assert.equal(await deliverBody('dots.test', body, { crlfOnly }), body);
    });
  }

  it('makes bare CR and LF of a body not known to be CRLF-only into CRLF, so no early end of data', async () => {
    // an older spool's message: nothing says its line ends were checked when it came in
    const body = 'Subject: old\r\n\r\nline\n.\nMAIL FROM:<x@y>\r.\rlast\r\n';
    assert.equal(
      await deliverBody('bare.test', body),
      'Subject: old\r\n\r\nline\r\n.\r\nMAIL FROM:<x@y>\r\n.\r\nlast\r\n',
    );
  });

  it('streams a 20 MB body from the spool without holding it in memory', async () => {
    // Live memory is what counts: collect before each sample, and free ArrayBuffers in the
    // collection itself rather than later on a background thread.
    v8.setFlagsFromString('--expose-gc');
    v8.setFlagsFromString('--no-concurrent-array-buffer-sweeping');
    const gc = vm.runInNewContext('gc') as () => void;
    const path = join(dir, 'big.eml');
    const hash = createHash('sha256');
    await new Promise<void>((resolve, reject) => {
      const out = createWriteStream(path);
      out.on('error', reject);
      out.write('Subject: big\r\n\r\n');
      hash.update('Subject: big\r\n\r\n');
      const line = `${'x'.repeat(74)}\r\n`;
      const dotLine = `.${'y'.repeat(73)}\r\n`;
      const block = Array.from({ length: 1024 }, (_, i) => (i % 64 === 0 ? dotLine : line)).join('');
      for (let i = 0; i < 256; i++) {
        out.write(block);
        hash.update(block);
      }
      out.end(resolve);
    });
    const size = 256 * 1024 * 76 + 16;
    await withMx(
      { domain: 'big.test', sink: { host: '127.0.0.2', keepBodies: false } },
      async ({ sink, t }) => {
        gc();
        const used = () => {
          const m = process.memoryUsage();
          return m.heapUsed + m.arrayBuffers;
        };
        const baseline = used();
        let peak = baseline;
        // a full collection every 100 ms: every 50 ms starved the delivery itself on a busy
        // machine (93 s and a 180 s time-out instead of 2.5 s), while a held body would stay
        // held across dozens of samples
        let samples = 0;
        const sampler = setInterval(() => {
          gc();
          peak = Math.max(peak, used());
          samples++;
        }, 100);
        let result: RecipientResult;
        try {
          result = only(await t.deliver(job('big.test', ['a@big.test'], { bodyPath: path, size })));
        } finally {
          clearInterval(sampler);
        }
        assert.equal(result.outcome, 'delivered');
        assert.equal(sink.messages[0]?.size, size);
        assert.equal(sink.messages[0]?.sha256, hash.digest('hex'));
        // holding the body would take 20 MB at once; streaming keeps a few chunks in flight
        assert.ok(samples >= 1, `memory sampled ${samples} times during the delivery`);
        const growth = peak - baseline;
        assert.ok(growth < 8 * 1024 * 1024, `live memory grew by ${(growth / 1048576).toFixed(1)} MB`);
      },
    );
  });
  for (const tls of [false, true]) {
    it(`delivers large messages at once, byte for byte, while their read buffers are used again (${tls ? 'STARTTLS' : 'plain'})`, async () => {
      // Six different 3 MB bodies (twelve 256 KB reads each) go out together over three
      // connections, so buffers given back by one delivery are read into by another: a
      // buffer reused too early would show as a wrong digest at the sink. Some bodies have
      // leading dots (the encoder sends copies), some none (it sends the read buffers
      // themselves, and holds each until the next comes); some are known CRLF-only. Plain
      // and over STARTTLS, whose socket encrypts each chunk as it is written.
      const bodies = Array.from({ length: 6 }, (_, n) => {
        const line = `${String.fromCharCode(97 + n).repeat(78)}\r\n`;
        const dotLine = `.${String(n).repeat(77)}\r\n`;
        const lines = Array.from({ length: (3 * 1024 * 1024) / 80 }, (_, i) =>
          n % 2 === 0 && i % 500 === 7 ? dotLine : line,
        );
        return Buffer.from(`Subject: body ${n}\r\n\r\n${lines.join('')}`);
      });
      const paths = await Promise.all(
        bodies.map(async (body, n) => {
          const path = join(dir, `parallel-${n}.eml`);
          await writeFile(path, body);
          return path;
        }),
      );
      await withMx(
        {
          domain: 'parallel.test',
          sink: { host: '127.0.0.2', keepBodies: false, tls },
          delivery: { maxConnectionsPerDomain: 3 },
        },
        async ({ sink, t }) => {
          const results = await Promise.all(
            bodies.map((body, n) =>
              t.deliver(
                job('parallel.test', [`n${n}@parallel.test`], {
                  bodyPath: paths[n],
                  size: body.length,
                  crlfOnly: n % 3 !== 0,
                }),
              ),
            ),
          );
          assert.deepEqual(
            results.map((r) => only(r).outcome),
            bodies.map(() => 'delivered'),
          );
          const digests = new Map(sink.messages.map((m) => [m.recipients[0], [m.sha256, m.size, m.tls]]));
          for (const [n, body] of bodies.entries()) {
            assert.deepEqual(
              digests.get(`n${n}@parallel.test`),
              [createHash('sha256').update(body).digest('hex'), body.length, tls],
              `body ${n}`,
            );
          }
          assert.equal(sink.connections, 3);
        },
      );
    });
  }
});

describe('SmtpTransport, connection reuse', () => {
  it('sends 10 sequential jobs to one destination over one connection', async () => {
    await withSink({ host: '127.0.0.2' }, async (sink) => {
      mxAt('reuse.test', '127.0.0.2');
      const { transport: t } = transport({ port: sink.port });
      try {
        for (let i = 0; i < 10; i++) {
          const result = only(await t.deliver(job('reuse.test', [`u${i}@reuse.test`])));
          assert.equal(result.outcome, 'delivered');
        }
        assert.equal(sink.messages.length, 10);
        assert.equal(sink.transactions, 10);
        assert.equal(sink.connections, 1);
        assert.equal(sink.resets, 0, 'after a message the server took, the next MAIL FROM needs no RSET');
      } finally {
        await t.close();
      }
      await waitFor('the pooled connection to close', () => sink.openConnections === 0);
    });
  });

  it('sends RSET before reusing a connection whose last transaction was refused', async () => {
    await withMx({ domain: 'refused.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      sink.setRecipientReply('gone@refused.test', { code: 550, text: '5.1.1 no such user' });
      assert.equal(only(await t.deliver(job('refused.test', ['gone@refused.test']))).outcome, 'bounced');
      assert.equal(sink.resets, 0);
      assert.equal(only(await t.deliver(job('refused.test', ['ok@refused.test']))).outcome, 'delivered');
      assert.equal(sink.resets, 1, 'the refused transaction is cleared first');
      assert.equal(sink.connections, 1);
      assert.equal(only(await t.deliver(job('refused.test', ['ok2@refused.test']))).outcome, 'delivered');
      assert.equal(sink.resets, 1);
    });
  });

  it('sends on a new connection at once when the reused one is closed without an answer', async () => {
    await withMx({ domain: 'hangup.test', sink: { host: '127.0.0.2' } }, async ({ sink, t, logs }) => {
      assert.equal(only(await t.deliver(job('hangup.test', ['a@hangup.test']))).outcome, 'delivered');
      sink.hangUpOnNextMail();
      const result = only(await t.deliver(job('hangup.test', ['b@hangup.test'])));
      assert.equal(result.outcome, 'delivered', 'not deferred: nothing had been sent');
      assert.deepEqual(
        sink.messages.map((m) => m.recipients),
        [['a@hangup.test'], ['b@hangup.test']],
      );
      assert.equal(sink.connections, 2);
      assert.ok(logs.lines.some((l) => l.event === 'stale_connection'));
    });
  });

  it('opens a new connection after messagesPerConnection messages', async () => {
    await withMx(
      { domain: 'wear.test', sink: { host: '127.0.0.2' }, delivery: { messagesPerConnection: 3 } },
      async ({ sink, t }) => {
        for (let i = 0; i < 10; i++) await t.deliver(job('wear.test', [`u${i}@wear.test`]));
        assert.equal(sink.messages.length, 10);
        assert.equal(sink.connections, 4);
      },
    );
  });

  it('keeps at most maxConnectionsPerDomain connections to a destination', async () => {
    await withMx(
      { domain: 'limit.test', sink: { host: '127.0.0.2' }, delivery: { maxConnectionsPerDomain: 2 } },
      async ({ sink, t }) => {
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => t.deliver(job('limit.test', [`u${i}@limit.test`]))),
        );
        assert.ok(results.every((r) => r[0]?.outcome === 'delivered'));
        assert.equal(sink.messages.length, 6);
        assert.equal(sink.connections, 2, 'two in parallel, then reused');
      },
    );
  });

  it('closes an idle connection after the idle timeout', async () => {
    await withMx(
      { domain: 'idle.test', sink: { host: '127.0.0.2' }, transport: { idleTimeoutMs: 50 } },
      async ({ sink, t }) => {
        await t.deliver(job('idle.test', ['a@idle.test']));
        await waitFor('the idle connection to close', () => sink.openConnections === 0);
        await t.deliver(job('idle.test', ['b@idle.test']));
        assert.equal(sink.connections, 2);
      },
    );
  });

  it('opens a new connection when the pooled one was closed by the server', async () => {
    await withMx({ domain: 'stale.test', sink: { host: '127.0.0.2' } }, async ({ sink, t }) => {
      await t.deliver(job('stale.test', ['a@stale.test']));
      sink.dropConnections();
      const result = only(await t.deliver(job('stale.test', ['b@stale.test'])));
      assert.equal(result.outcome, 'delivered');
      assert.equal(sink.messages.length, 2);
      assert.equal(sink.connections, 2);
    });
  });

  it('after close, ends pooled connections and defers new jobs', async () => {
    await withSink({ host: '127.0.0.2' }, async (sink) => {
      mxAt('closing.test', '127.0.0.2');
      const { transport: t } = transport({ port: sink.port });
      await t.deliver(job('closing.test', ['a@closing.test']));
      await t.close();
      await waitFor('the pooled connection to close', () => sink.openConnections === 0);
      const result = only(await t.deliver(job('closing.test', ['b@closing.test'])));
      assert.equal(result.outcome, 'deferred');
      assert.equal(result.status, '4.3.2');
      assert.equal(sink.messages.length, 1);
    });
  });
});

describe('parseReply', () => {
  it('takes the enhanced status code from the reply, or derives one from the reply code', () => {
    assert.deepEqual(parseReply('250 2.0.0 Ok: queued'), { code: 250, status: '2.0.0' });
    assert.deepEqual(parseReply('250 Ok'), { code: 250, status: '2.0.0' });
    assert.deepEqual(parseReply('550 5.1.1 no such user'), { code: 550, status: '5.1.1' });
    assert.deepEqual(parseReply('552 5.3.4 too big'), { code: 552, status: '5.3.4' });
    assert.deepEqual(parseReply('451 try later'), { code: 451, status: '4.0.0' });
    assert.deepEqual(parseReply('550 4.2.1 mismatched class'), { code: 550, status: '5.0.0' });
    assert.deepEqual(parseReply('421-4.4.2 first line\n421 4.4.2 closing'), { code: 421, status: '4.4.2' });
    assert.deepEqual(parseReply('550 5.1.10 null MX'), { code: 550, status: '5.1.10' });
    assert.deepEqual(parseReply('nonsense'), { code: 0, status: '4.0.0' });
  });
});

describe('SmtpTransport, smarthost', () => {
  const AUTH = { username: 'relay', password: 'smarthost-secret' };

  function smarthost(sink: SmtpSink, extra: Record<string, unknown> = {}) {
    return {
      mode: 'smarthost',
      smarthost: { host: sink.host, port: sink.port, tls: 'starttls', rejectUnauthorized: false, ...extra },
    };
  }

  /** A sink as the smarthost (`smarthost` adds to its settings) and a transport that uses it, closed after run. */
  function withSmarthost<T>(
    options: {
      sink?: SmtpSinkOptions;
      smarthost?: Record<string, unknown>;
      transport?: Partial<SmtpTransportOptions>;
    },
    run: (relay: { sink: SmtpSink; t: SmtpTransport; logs: LogCapture }) => Promise<T>,
  ): Promise<T> {
    return withSink(options.sink ?? {}, (sink) =>
      withTransport(smarthost(sink, options.smarthost), (x) => run({ sink, ...x }), options.transport),
    );
  }

  it('hands every message to the smarthost over STARTTLS with AUTH', async () => {
    await withSmarthost(
      {
        sink: { tls: true, auth: AUTH },
        smarthost: { username: AUTH.username },
        transport: { smarthostPassword: AUTH.password },
      },
      async ({ sink, t }) => {
        const results = await t.deliver(job('smarthost', ['a@one.test', 'b@two.test']));
        assert.deepEqual(
          results.map((r) => [r.outcome, r.remoteHost]),
          [
            ['delivered', '127.0.0.1'],
            ['delivered', '127.0.0.1'],
          ],
        );
        assert.equal(sink.messages[0]?.tls, true);
        assert.equal(sink.messages[0]?.authUser, 'relay');
        assert.deepEqual(sink.messages[0]?.recipients, ['a@one.test', 'b@two.test']);
        assert.equal(dns.queries('one.test'), 0, 'no MX lookup in smarthost mode');
      },
    );
  });

  it('falls back to the next host when the smarthost cannot be reached, and defers when none can', async () => {
    // nothing listens on 127.0.0.5 or 127.0.0.6 at the sink's port (fallbacks share the port)
    await withSink({ host: '127.0.0.3' }, async (sink) => {
      const delivery = {
        mode: 'smarthost',
        smarthost: {
          host: '127.0.0.5',
          fallbackHosts: ['127.0.0.6', sink.host],
          port: sink.port,
          tls: 'none',
        },
      };
      await withTransport(delivery, async ({ t, logs }) => {
        const result = only(await t.deliver(job('smarthost', ['a@one.test'])));
        assert.deepEqual([result.outcome, result.remoteHost], ['delivered', '127.0.0.3']);
        assert.deepEqual(sink.messages[0]?.recipients, ['a@one.test']);
        assert.deepEqual(
          logs.lines.filter((l) => l.event === 'smarthost_failed').map((l) => l.remoteHost),
          ['127.0.0.5', '127.0.0.6'],
        );
      });
      const down = {
        mode: 'smarthost',
        smarthost: { host: '127.0.0.5', fallbackHosts: ['127.0.0.6'], port: sink.port, tls: 'none' },
      };
      await withTransport(down, async ({ t }) => {
        const result = only(await t.deliver(job('smarthost', ['a@one.test'])));
        assert.equal(result.outcome, 'deferred');
        assert.match(result.response, /127\.0\.0\.6/, 'the last host tried');
      });
    });
  });

  it('defers (4.7.0) and logs an error when the smarthost refuses our credentials', async () => {
    await withSmarthost(
      {
        sink: { tls: true, auth: AUTH },
        smarthost: { username: AUTH.username },
        transport: { smarthostPassword: 'wrong' },
      },
      async ({ sink, t, logs }) => {
        const result = only(await t.deliver(job('smarthost', ['a@one.test'])));
        assert.equal(result.outcome, 'deferred');
        assert.equal(result.status, '4.7.0');
        assert.match(result.response, /535/);
        assert.equal(sink.messages.length, 0);
        const line = logs.lines.find((l) => l.event === 'smarthost_failed');
        assert.equal(line?.level, 'error');
        assert.equal(line?.reason, 'auth_failed');
        assert.ok(!JSON.stringify(logs.lines).includes('wrong'), 'the password is not logged');
      },
    );
  });

  it("verifies the smarthost's certificate when rejectUnauthorized is on: 4.7.5", async () => {
    await withSmarthost(
      { sink: { tls: true }, smarthost: { rejectUnauthorized: true } },
      async ({ sink, t }) => {
        const result = only(await t.deliver(job('smarthost', ['a@one.test'])));
        assert.equal(result.outcome, 'deferred');
        assert.equal(result.status, '4.7.5');
        assert.equal(sink.messages.length, 0);
      },
    );
  });

  it('defers (4.7.10) when tls is starttls and the smarthost does not offer it', async () => {
    await withSmarthost({}, async ({ sink, t }) => {
      const result = only(await t.deliver(job('smarthost', ['a@one.test'])));
      assert.equal(result.outcome, 'deferred');
      assert.equal(result.status, '4.7.10');
      assert.equal(sink.messages.length, 0);
    });
  });

  it('speaks implicit TLS, or plain SMTP when tls is none', async () => {
    await withSmarthost(
      { sink: { implicitTls: true }, smarthost: { tls: 'implicit' } },
      async ({ sink, t }) => {
        assert.equal(only(await t.deliver(job('smarthost', ['a@one.test']))).outcome, 'delivered');
        assert.equal(sink.messages[0]?.tls, true);
      },
    );
    await withSmarthost({ sink: { tls: true }, smarthost: { tls: 'none' } }, async ({ sink, t }) => {
      assert.equal(only(await t.deliver(job('smarthost', ['a@one.test']))).outcome, 'delivered');
      assert.equal(sink.messages[0]?.tls, false, 'STARTTLS offered but not used');
    });
  });

  it('refuses a smarthost configuration without the smarthost or its password', () => {
    const config = deliveryConfig({});
    const logger = createLogger({ level: 'silent' });
    assert.throws(
      () => new SmtpTransport({ mode: 'smarthost', config, hostname: 'relay.test', logger }),
      (err: unknown) => isSluiceError(err, 'SLUICE_ERR_CONFIG_INVALID'),
    );
    const withUser = deliveryConfig({ smarthost: { host: 'smtp.example', username: 'u' } });
    assert.throws(
      () => new SmtpTransport({ mode: 'smarthost', config: withUser, hostname: 'relay.test', logger }),
      (err: unknown) => isSluiceError(err, 'SLUICE_ERR_CONFIG_INVALID'),
    );
  });
});
