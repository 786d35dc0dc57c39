// DANE (RFC 7672) in direct delivery, against a real validating resolver: unbound from
// Debian serves a zone signed here with ldns-signzone and trusts its key, so the AD bit it
// sets is a real DNSSEC validation (and a tampered signature makes it answer SERVFAIL).
// The MX and address records come from the loopback DNS server as in the other delivery
// tests; SMTP sinks with STARTTLS stand in for the MX hosts.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { validateRelayConfig } from '../config/validate.ts';
import { createLogger } from '../observability/logger.ts';
import { startDnsServer, type TestDnsServer } from '../testing/dns-server.ts';
import { LogCapture } from '../testing/harness.ts';
import { freePortOn } from '../testing/ports.ts';
import { skipUnlessPresent } from '../testing/requirements.ts';
import { type SmtpSink, startSmtpSink } from '../testing/smtp-sink.ts';
import { waitFor } from '../testing/wait-for.ts';
import { DaneResolver } from './dane.ts';
import { SmtpTransport } from './smtp-transport.ts';
import type { DeliveryJob, RecipientResult } from './types.ts';

const TOOLS = ['unbound', 'ldns-keygen', 'ldns-signzone'];
const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
const BODY = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: dane\r\n\r\nover DANE\r\n';

describe('DANE in direct delivery', {
  skip: skipUnlessPresent(
    missing.length > 0 &&
      `${missing.join(', ')} not installed: install unbound and ldnsutils (scripts/test-deps.sh)`,
  ),
}, () => {
  let dir: string;
  let dns: TestDnsServer;
  let sink: SmtpSink;
  /** Sends a chain: its certificate, issued by a test CA, and the CA. */
  let taSink: SmtpSink;
  /** Sends a self-signed certificate with the same CA appended, which did not issue it. */
  let forgedSink: SmtpSink;
  let config: ReturnType<typeof validateRelayConfig>['delivery'];
  let unbound: ChildProcess;
  let resolver: string;
  let transport: SmtpTransport;
  const logs = new LogCapture();
  const outcomes: string[] = [];
  let seq = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-dane-'));
    const pems = await generate([{ name: 'commonName', value: 'mx.dane.example' }], {
      keySize: 2048,
      algorithm: 'sha256',
    });
    sink = await startSmtpSink({ tls: true, certificate: { key: pems.private, cert: pems.cert } });
    // DANE-EE SPKI SHA-256 (3 1 1) of the sink's certificate, and one that matches nothing
    const spki = new X509Certificate(pems.cert).publicKey.export({ type: 'spki', format: 'der' });
    const hash = createHash('sha256').update(spki).digest('hex');
    const other = createHash('sha256').update('another key').digest('hex');
    const port = sink.port;
    const caPems = await generate([{ name: 'commonName', value: 'Sluice DANE Test CA' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true },
      ],
    });
    const issued = await generate([{ name: 'commonName', value: 'mx-ta.dane.example' }], {
      keySize: 2048,
      algorithm: 'sha256',
      ca: { key: caPems.private, cert: caPems.cert },
    });
    taSink = await startSmtpSink({
      tls: true,
      certificate: { key: issued.private, cert: `${issued.cert}\n${caPems.cert}` },
    });
    forgedSink = await startSmtpSink({
      tls: true,
      certificate: { key: pems.private, cert: `${pems.cert}\n${caPems.cert}` },
    });
    const caHash = createHash('sha256')
      .update(new X509Certificate(caPems.cert).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('hex');
    await writeFile(
      join(dir, 'dane.example.zone'),
      [
        '$ORIGIN dane.example.',
        '$TTL 300',
        '@ IN SOA ns.dane.example. hostmaster.dane.example. 1 3600 600 86400 300',
        '@ IN NS ns.dane.example.',
        'ns IN A 127.0.0.1',
        `_${port}._tcp.mx IN TLSA 3 1 1 ${hash}`,
        `_${port}._tcp.mx-wrong IN TLSA 3 1 1 ${other}`,
        `_${port}._tcp.mx-bogus IN TLSA 3 1 1 ${hash}`,
        `_${taSink.port}._tcp.mx-ta IN TLSA 2 1 1 ${caHash}`,
        `_${forgedSink.port}._tcp.mx-forged IN TLSA 2 1 1 ${caHash}`,
        '',
      ].join('\n'),
    );
    await writeFile(
      join(dir, 'insecure.example.zone'),
      [
        '$ORIGIN insecure.example.',
        '$TTL 300',
        '@ IN SOA ns.insecure.example. hostmaster.insecure.example. 1 3600 600 86400 300',
        '@ IN NS ns.insecure.example.',
        `_${port}._tcp.mx IN TLSA 3 1 1 ${other}`,
        '',
      ].join('\n'),
    );
    const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: dir }).toString().trim();
    const ksk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', 'dane.example']);
    const zsk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', 'dane.example']);
    run('ldns-signzone', ['dane.example.zone', ksk, zsk]);
    // a signature that does not verify: the validator must call the answer bogus
    const signed = await readFile(join(dir, 'dane.example.zone.signed'), 'utf8');
    const tampered = signed
      .split('\n')
      .map((line) =>
        line.startsWith(`_${port}._tcp.mx-bogus.dane.example.`) && /\sRRSIG\s+TLSA\s/.test(line)
          ? line.replace(
              /([A-Za-z0-9+/])([A-Za-z0-9+/]{8}=*)$/,
              (_m, c: string, rest: string) => `${c === 'A' ? 'B' : 'A'}${rest}`,
            )
          : line,
      )
      .join('\n');
    assert.notEqual(tampered, signed, 'a signature was tampered with');
    await writeFile(join(dir, 'dane.example.zone.signed'), tampered);

    const dnsPort = await freePortOn(['127.0.0.1']);
    resolver = `127.0.0.1:${dnsPort}`;
    await writeFile(
      join(dir, 'unbound.conf'),
      [
        'server:',
        `  interface: 127.0.0.1@${dnsPort}`,
        '  do-daemonize: no',
        '  username: ""',
        '  chroot: ""',
        `  directory: "${dir}"`,
        '  pidfile: ""',
        '  use-syslog: no',
        '  logfile: ""',
        '  access-control: 127.0.0.0/8 allow',
        '  module-config: "validator iterator"',
        `  trust-anchor-file: "${join(dir, `${ksk}.key`)}"`,
        'auth-zone:',
        '  name: "dane.example"',
        `  zonefile: "${join(dir, 'dane.example.zone.signed')}"`,
        '  for-upstream: yes',
        '  for-downstream: no',
        '  fallback-enabled: no',
        'auth-zone:',
        '  name: "insecure.example"',
        `  zonefile: "${join(dir, 'insecure.example.zone')}"`,
        '  for-upstream: yes',
        '  for-downstream: no',
        '  fallback-enabled: no',
        '',
      ].join('\n'),
    );
    unbound = spawn('unbound', ['-d', '-c', join(dir, 'unbound.conf')], { stdio: 'ignore' });
    const probe = new DaneResolver({ server: resolver, timeoutMs: 500 });
    try {
      await waitFor(
        'unbound answers with validated TLSA records',
        async () => (await probe.tlsa('mx.dane.example', port)).kind === 'records',
        { timeoutMs: 10_000 },
      );
    } finally {
      probe.close();
    }

    dns = await startDnsServer();
    for (const [domain, host] of [
      ['ok.test', 'mx.dane.example'],
      ['wrong.test', 'mx-wrong.dane.example'],
      ['bogus.test', 'mx-bogus.dane.example'],
      ['insecure.test', 'mx.insecure.example'],
      ['ta.test', 'mx-ta.dane.example'],
      ['forged.test', 'mx-forged.dane.example'],
    ] as const) {
      dns.setMx(domain, [{ exchange: host, priority: 10 }]);
      dns.setA(host, ['127.0.0.1']);
    }
    await writeFile(join(dir, 'message.eml'), BODY);
    config = validateRelayConfig(
      {
        listeners: [{ name: 'submission', address: '127.0.0.1', port: 0 }],
        spoolDir: join(dir, 'spool'),
        usersFile: join(dir, 'users.yaml'),
        delivery: {
          resolvers: [dns.address],
          allowLocalAddresses: true,
          connectTimeoutSeconds: 5,
          port,
          dane: { enabled: true, resolver },
        },
      },
      'test config',
    ).delivery;
    transport = new SmtpTransport({
      mode: 'direct',
      config,
      hostname: 'relay.test',
      logger: createLogger({ level: 'debug', destination: logs }),
      onDane: (result) => outcomes.push(result),
    });
  });
  after(async () => {
    await transport?.close();
    unbound?.kill();
    await sink?.close();
    await taSink?.close();
    await forgedSink?.close();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function job(domain: string): DeliveryJob {
    seq++;
    return {
      queueId: `Q${seq}`,
      sender: 'a@sender.test',
      recipients: [`b${seq}@${domain}`],
      domain,
      bodyPath: join(dir, 'message.eml'),
      size: Buffer.byteLength(BODY),
    };
  }

  async function deliver(domain: string, via = transport): Promise<RecipientResult> {
    const results = await via.deliver(job(domain));
    assert.equal(results.length, 1);
    const [result] = results;
    assert.ok(result);
    return result;
  }

  it('delivers over TLS when the certificate matches the validated TLSA record (a self-signed one: DANE-EE)', async () => {
    const result = await deliver('ok.test');
    assert.equal(result.outcome, 'delivered', result.response);
    assert.equal(sink.messages.at(-1)?.tls, true);
    assert.deepEqual(outcomes, ['verified']);
    const line = logs.lines.find((l) => l.event === 'dane');
    assert.equal(line?.usage, 'DANE-EE');
  });

  it('defers when the certificate matches no TLSA record, or the TLSA answer is bogus', async () => {
    const before = sink.messages.length;
    const wrong = await deliver('wrong.test');
    assert.equal(wrong.outcome, 'deferred');
    assert.equal(wrong.status, '4.7.5');
    assert.equal(wrong.response, 'DANE: mx-wrong.dane.example: the certificate matches no TLSA record');
    const bogus = await deliver('bogus.test');
    assert.equal(bogus.outcome, 'deferred');
    assert.equal(bogus.status, '4.7.5');
    assert.match(bogus.response ?? '', /^DANE: TLSA _\d+\._tcp\.mx-bogus\.dane\.example: SERVFAIL$/);
    assert.equal(sink.messages.length, before, 'nothing was delivered');
    assert.deepEqual(outcomes.slice(-2), ['failed', 'failed']);
  });

  it('ignores TLSA records the resolver did not validate: opportunistic delivery as without DANE', async () => {
    const before = outcomes.length;
    assert.equal((await deliver('insecure.test')).outcome, 'delivered');
    assert.equal(outcomes.length, before);
  });

  it('DANE-TA: a chain that descends from the trust anchor passes; the anchor merely appended does not', async () => {
    const through = (port: number) =>
      new SmtpTransport({
        mode: 'direct',
        config: { ...config, port },
        hostname: 'relay.test',
        logger: createLogger({ level: 'debug', destination: logs }),
        onDane: (result) => outcomes.push(result),
      });
    const ta = through(taSink.port);
    const forged = through(forgedSink.port);
    try {
      const good = await deliver('ta.test', ta);
      assert.equal(good.outcome, 'delivered', good.response);
      assert.equal(logs.lines.filter((l) => l.event === 'dane').at(-1)?.usage, 'DANE-TA');
      const bad = await deliver('forged.test', forged);
      assert.equal(bad.outcome, 'deferred');
      assert.equal(bad.response, 'DANE: mx-forged.dane.example: the certificate matches no TLSA record');
      assert.equal(forgedSink.messages.length, 0);
    } finally {
      await ta.close();
      await forged.close();
    }
  });
});
