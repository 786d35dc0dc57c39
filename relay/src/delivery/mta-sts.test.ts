// MTA-STS (RFC 8461) in direct delivery: a real DNS server on loopback publishes the
// _mta-sts TXT records, MX and address records; a real HTTPS server serves the policies
// with a certificate from a test CA; real SMTP sinks with STARTTLS stand in for MX hosts.
// The one fake: the policy host's port. RFC 8461 fixes 443, which a test cannot bind, so
// the transport is given the HTTPS server's port (SmtpTransportOptions.mtaStsPort).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { validateRelayConfig } from '../config/validate.ts';
import { createLogger } from '../observability/logger.ts';
import { MemoryStore } from '../state/memory-store.ts';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { LogCapture } from '../testing/harness.ts';
import { type SmtpSink, startSmtpSink } from '../testing/smtp-sink.ts';
import { mxMatches } from './mta-sts.ts';
import { Shaper } from './shaping.ts';
import { type MtaStsOutcome, SmtpTransport } from './smtp-transport.ts';
import type { DeliveryJob, RecipientResult } from './types.ts';

type Pems = { key: string; cert: string };

async function issue(ca: Pems, names: string[]): Promise<Pems> {
  const pems = await generate([{ name: 'commonName', value: names[0] ?? 'x' }], {
    keySize: 2048,
    algorithm: 'sha256',
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

const BODY = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: sts\r\n\r\nover TLS, or not at all\r\n';
const DOMAINS = [
  'secure.example',
  'badcert.example',
  'nomatch.example',
  'plain.example',
  'testing.example',
  'shared.example',
];

describe('MTA-STS in direct delivery', () => {
  let dns: TestDnsServer;
  let dir: string;
  let bodyPath: string;
  let caFile: string;
  let mxCert: Pems;
  let https: Server;
  let httpsPort: number;
  /** Policy files by host name; a function answers the request itself. */
  const policies = new Map<string, string | { status: number; location?: string }>();
  const fetches: string[] = [];
  let seq = 0;

  before(async () => {
    dns = await startDnsServer();
    dir = await mkdtemp(join(tmpdir(), 'sluice-mta-sts-'));
    bodyPath = join(dir, 'message.eml');
    await writeFile(bodyPath, BODY);
    const caPems = await generate([{ name: 'commonName', value: 'Sluice Test CA' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true },
      ],
    });
    const ca = { key: caPems.private, cert: caPems.cert };
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, ca.cert);
    mxCert = await issue(ca, ['mx.secure.example']);
    const policyCert = await issue(
      ca,
      DOMAINS.map((d) => `mta-sts.${d}`),
    );
    https = createServer(policyCert, (req, res) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      fetches.push(host);
      const answer = req.url === '/.well-known/mta-sts.txt' ? policies.get(host) : undefined;
      if (typeof answer === 'string') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(answer);
      } else if (answer) {
        res.writeHead(answer.status, answer.location ? { location: answer.location } : {}).end();
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    httpsPort = (https.address() as AddressInfo).port;
    for (const domain of DOMAINS) {
      dns.setMx(domain, [{ exchange: `mx.${domain}`, priority: 10 }]);
      dns.setA(`mx.${domain}`, ['127.0.0.1']);
      dns.setA(`mta-sts.${domain}`, ['127.0.0.1']);
    }
    const policy = (mode: string, ...mx: string[]) =>
      ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), 'max_age: 86400', ''].join('\r\n');
    for (const [domain, body] of [
      ['secure.example', policy('enforce', '*.secure.example')],
      ['badcert.example', policy('enforce', 'mx.badcert.example')],
      ['nomatch.example', policy('enforce', 'mx.elsewhere.example')],
      ['plain.example', policy('enforce', 'mx.plain.example')],
      ['testing.example', policy('testing', 'mx.testing.example')],
      ['shared.example', policy('testing', 'mx.shared.example')],
    ] as const) {
      dns.setTxt(`_mta-sts.${domain}`, ['v=STSv1; id=20260101']);
      policies.set(`mta-sts.${domain}`, body);
    }
  });
  after(async () => {
    await new Promise<void>((resolve) => https.close(() => resolve()));
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  function job(domain: string): DeliveryJob {
    seq++;
    return {
      queueId: `Q${seq}`,
      sender: 'a@sender.test',
      recipients: [`b${seq}@${domain}`],
      domain,
      bodyPath,
      size: Buffer.byteLength(BODY),
    };
  }

  /** A sink as every MX (one port for all), a transport delivering there; both closed after run. */
  async function withMx<T>(
    sinkOptions: {
      tls: boolean;
      sharedCache?: MemoryStore;
      shapingGroups?: Array<{ name: string; mxSuffixes: string[] }>;
    },
    run: (made: {
      t: SmtpTransport;
      sink: SmtpSink;
      logs: LogCapture;
      outcomes: MtaStsOutcome[];
      groups: string[];
    }) => Promise<T>,
  ): Promise<T> {
    const sink = await startSmtpSink({ tls: sinkOptions.tls, certificate: mxCert });
    const logs = new LogCapture();
    const outcomes: MtaStsOutcome[] = [];
    const groups: string[] = [];
    const whole = validateRelayConfig(
      {
        listeners: [{ name: 'submission', address: '127.0.0.1', port: 0 }],
        spoolDir: join(dir, 'spool'),
        usersFile: join(dir, 'users.yaml'),
        delivery: {
          resolvers: [dns.address],
          allowLocalAddresses: true,
          connectTimeoutSeconds: 5,
          port: sink.port,
        },
        ...(sinkOptions.shapingGroups ? { shaping: { groups: sinkOptions.shapingGroups } } : {}),
      },
      'test config',
    );
    const config = whole.delivery;
    const logger = createLogger({ level: 'debug', destination: logs });
    const t = new SmtpTransport({
      mode: 'direct',
      config,
      hostname: 'relay.test',
      logger,
      caFile,
      mtaStsPort: httpsPort,
      sharedCache: sinkOptions.sharedCache,
      ...(sinkOptions.shapingGroups
        ? {
            shaper: new Shaper({
              store: new MemoryStore(),
              config: () => whole.shaping,
              instance: 'test',
              logger,
            }),
          }
        : {}),
      onMtaSts: (o, group) => {
        outcomes.push(o);
        groups.push(group);
      },
    });
    try {
      return await run({ t, sink, logs, outcomes, groups });
    } finally {
      await t.close();
      await sink.close();
    }
  }

  function only(results: RecipientResult[]): RecipientResult {
    assert.equal(results.length, 1);
    const [result] = results;
    assert.ok(result);
    return result;
  }

  it('enforce: delivers over TLS to an MX the policy names, with a certificate valid for it', async () => {
    await withMx({ tls: true }, async ({ t, sink, logs, outcomes }) => {
      const result = only(await t.deliver(job('secure.example')));
      assert.equal(result.outcome, 'delivered', result.response);
      assert.equal(sink.messages.length, 1);
      assert.equal(sink.messages[0]?.tls, true);
      assert.deepEqual(outcomes, [{ mode: 'enforce', result: 'enforced' }]);
      assert.equal(logs.events('mta_sts')[0]?.remoteHost, 'mx.secure.example');
    });
  });

  it('names the destination group of each outcome, in the log line and for the metric', async () => {
    await withMx(
      { tls: true, shapingGroups: [{ name: 'secure-group', mxSuffixes: ['.secure.example'] }] },
      async ({ t, sink, logs, outcomes, groups }) => {
        assert.equal(only(await t.deliver(job('secure.example'))).outcome, 'delivered');
        assert.equal(sink.messages.length, 1);
        assert.deepEqual(outcomes, [{ mode: 'enforce', result: 'enforced' }]);
        assert.deepEqual(groups, ['secure-group']);
        assert.equal(logs.events('mta_sts')[0]?.group, 'secure-group');
      },
    );
  });

  it('enforce: defers, never delivers, when the certificate does not fit, the MX is not in the policy, or there is no STARTTLS', async () => {
    await withMx({ tls: true }, async ({ t, sink, outcomes }) => {
      const badCert = only(await t.deliver(job('badcert.example')));
      assert.equal(badCert.outcome, 'deferred');
      assert.equal(badCert.status, '4.7.5');
      assert.match(badCert.response ?? '', /TLS with mx\.badcert\.example failed/);
      const noMatch = only(await t.deliver(job('nomatch.example')));
      assert.equal(noMatch.outcome, 'deferred');
      assert.equal(noMatch.status, '4.7.5');
      assert.equal(
        noMatch.response,
        'no MX host of nomatch.example matches its MTA-STS policy (mx: mx.elsewhere.example)',
      );
      assert.equal(sink.messages.length, 0);
      assert.deepEqual(
        outcomes.map((o) => o.result),
        ['failed', 'failed'],
      );
    });
    await withMx({ tls: false }, async ({ t, sink }) => {
      const plain = only(await t.deliver(job('plain.example')));
      assert.equal(plain.outcome, 'deferred');
      assert.equal(plain.status, '4.7.10');
      assert.equal(sink.messages.length, 0);
    });
  });

  it('testing: delivers anyway, and logs and counts what enforce would have refused', async () => {
    await withMx({ tls: true }, async ({ t, sink, logs, outcomes }) => {
      const result = only(await t.deliver(job('testing.example')));
      assert.equal(result.outcome, 'delivered');
      assert.equal(sink.messages.length, 1);
      assert.deepEqual(outcomes, [{ mode: 'testing', result: 'testing_failed' }]);
      const line = logs.events('mta_sts')[0];
      assert.equal(line?.domain, 'testing.example');
      assert.match(String(line?.problem), /^certificate: /);
    });
  });

  it('keeps a policy until max_age, fetches it again when the TXT id changes, and follows no redirect', async () => {
    await withMx({ tls: true }, async ({ t, sink }) => {
      const before = fetches.filter((h) => h === 'mta-sts.secure.example').length;
      assert.equal(only(await t.deliver(job('secure.example'))).outcome, 'delivered');
      assert.equal(only(await t.deliver(job('secure.example'))).outcome, 'delivered');
      const count = () => fetches.filter((h) => h === 'mta-sts.secure.example').length;
      assert.equal(count(), before + 1, 'fetched once for two deliveries');
      // a new id, and a policy that no longer names the MX: refetched, enforced
      dns.setTxt('_mta-sts.secure.example', ['v=STSv1; id=20260202']);
      policies.set(
        'mta-sts.secure.example',
        'version: STSv1\r\nmode: enforce\r\nmx: mx.moved.example\r\nmax_age: 86400\r\n',
      );
      const moved = only(await t.deliver(job('secure.example')));
      assert.equal(count(), before + 2);
      assert.equal(moved.outcome, 'deferred');
      assert.equal(moved.status, '4.7.5');
      // a redirect is a failed fetch: the cached policy stays in force (RFC 8461 3.3, 5.1)
      dns.setTxt('_mta-sts.secure.example', ['v=STSv1; id=20260303']);
      policies.set('mta-sts.secure.example', { status: 301, location: 'https://elsewhere.example/' });
      assert.equal(only(await t.deliver(job('secure.example'))).status, '4.7.5');
      assert.equal(sink.messages.length, 2);
    });
  });

  it('a policy one relay fetched serves another through the shared state', async () => {
    const store = new MemoryStore();
    const count = () => fetches.filter((h) => h === 'mta-sts.shared.example').length;
    for (let relay = 0; relay < 2; relay++) {
      await withMx({ tls: true, sharedCache: store }, async ({ t, outcomes }) => {
        assert.equal(only(await t.deliver(job('shared.example'))).outcome, 'delivered');
        assert.deepEqual(outcomes, [{ mode: 'testing', result: 'testing_failed' }]);
      });
    }
    assert.equal(count(), 1, 'fetched by the first transport only');
    await store.close();
  });

  it('a domain without a policy gets plain opportunistic delivery, and no MTA-STS line', async () => {
    dns.setMx('none.example', [{ exchange: 'mx.none.example', priority: 10 }]);
    dns.setA('mx.none.example', ['127.0.0.1']);
    await withMx({ tls: false }, async ({ t, logs, outcomes }) => {
      assert.equal(only(await t.deliver(job('none.example'))).outcome, 'delivered');
      assert.deepEqual(outcomes, []);
      assert.deepEqual(logs.events('mta_sts'), []);
    });
  });

  it('a trusted CA file that cannot be read is a config error naming the field', () => {
    const config = validateRelayConfig(
      {
        listeners: [{ name: 'submission', address: '127.0.0.1', port: 0 }],
        spoolDir: join(dir, 'spool'),
        usersFile: join(dir, 'users.yaml'),
      },
      'test config',
    ).delivery;
    const missing = join(dir, 'no-such-ca.pem');
    assert.throws(
      () =>
        new SmtpTransport({
          mode: 'direct',
          config,
          hostname: 'relay.test',
          logger: createLogger({ level: 'silent' }),
          caFile: missing,
        }),
      (err: Error & { code?: string }) =>
        err.code === 'SLUICE_ERR_CONFIG_INVALID' &&
        err.message.startsWith(`tls.trustedCaFile: cannot read ${missing}`),
    );
  });

  it('a wildcard pattern matches one leftmost label only (RFC 8461 4.1)', () => {
    assert.equal(mxMatches('mx.secure.example', ['*.secure.example']), true);
    assert.equal(mxMatches('MX.Secure.Example.', ['*.secure.example']), true);
    assert.equal(mxMatches('a.mx.secure.example', ['*.secure.example']), false);
    assert.equal(mxMatches('secure.example', ['*.secure.example']), false);
    assert.equal(mxMatches('mx.secure.example', ['mx.secure.example']), true);
  });
});
