// DKIM signing end to end: a real SMTP session into the relay, delivery to a real sink,
// and the delivered bytes verified against public keys published as TXT records by a real
// DNS server on loopback (mailauth), and by a second implementation (Python's dkimpy).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { ConfigError, validateRelayConfig } from '../config/validate.ts';
import {
  authenticated,
  PLAIN_LISTENER,
  type SmtpSink,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
} from '../testing/index.ts';
import { skipUnlessPresent } from '../testing/requirements.ts';

function dkimRecord(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  // RFC 8463 4.2: an Ed25519 record holds the bare 32-byte key
  return publicKey.asymmetricKeyType === 'ed25519'
    ? `v=DKIM1; k=ed25519; p=${der.subarray(-32).toString('base64')}`
    : `v=DKIM1; k=rsa; p=${der.toString('base64')}`;
}

// Debian's python3-dkim and python3-nacl (scripts/test-deps.sh) install for Debian's own
// Python, which need not be the python3 first on PATH
const PYTHON = '/usr/bin/python3';
const dkimpy = spawnSync(PYTHON, ['-c', 'import dkim, nacl'], { stdio: 'ignore' }).status === 0;

describe('DKIM signing', () => {
  let dns: TestDnsServer;
  let sink: SmtpSink;
  let t: TestRelay;
  let keyDir: string;
  const records = new Map<string, string>();
  let resolve: (name: string, type: string) => Promise<string[][]>;

  before(async () => {
    dns = await startDnsServer();
    sink = await startSmtpSink();
    keyDir = await mkdtemp(join(tmpdir(), 'sluice-dkim-'));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ed = generateKeyPairSync('ed25519');
    const provider = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeFile(join(keyDir, 'rsa.pem'), pem(rsa.privateKey));
    await writeFile(join(keyDir, 'ed.pem'), pem(ed.privateKey));
    await writeFile(join(keyDir, 'provider.pem'), pem(provider.privateKey));
    for (const [name, key] of [
      ['s1._domainkey.customer.example', rsa.publicKey],
      ['e1._domainkey.customer.example', ed.publicKey],
      ['p1._domainkey.provider.example', provider.publicKey],
    ] as const) {
      records.set(name, dkimRecord(key));
      dns.setTxt(name, [dkimRecord(key)]);
    }
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([dns.address]);
    resolve = (name) => resolver.resolveTxt(name);
    t = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
        dkim: {
          keys: [
            { domain: 'customer.example', selector: 's1', privateKeyFile: join(keyDir, 'rsa.pem') },
            {
              domain: 'customer.example',
              selector: 'e1',
              algorithm: 'ed25519-sha256',
              privateKeyFile: join(keyDir, 'ed.pem'),
            },
          ],
          defaultSigner: {
            domain: 'provider.example',
            selector: 'p1',
            privateKeyFile: join(keyDir, 'provider.pem'),
          },
        },
      },
    });
  });
  after(async () => {
    await t.close();
    await sink.close();
    await dns.close();
    await rm(keyDir, { recursive: true, force: true });
  });

  async function send(from: string, body: string): Promise<Buffer> {
    const before = sink.messages.length;
    const c = await authenticated(t.port('plain'), 'alice');
    assert.equal((await c.command('MAIL FROM:<alice@customer.example>')).code, 250);
    assert.equal((await c.command('RCPT TO:<bob@elsewhere.example>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    // no Date or Message-ID: the relay adds them, and the signature covers them
    c.write(`From: Alice <${from}>\r\nTo: bob@elsewhere.example\r\nSubject: signed\r\n\r\n${body}\r\n.\r\n`);
    const reply = await c.reply();
    assert.equal(reply.code, 250, reply.text);
    await c.quit();
    await sink.waitForMessages(before + 1);
    const message = sink.messages[before];
    assert.ok(message);
    return message.raw;
  }

  it('signs with the From domain’s RSA and Ed25519 keys; the delivered bytes verify, and fail once altered', async () => {
    // a body longer than one chunk, with trailing blank lines and spaces (relaxed canonicalisation)
    const body = `${'line with  spaces   \r\n'.repeat(5000)}end\r\n\r\n`;
    const raw = await send('alice@customer.example', body);
    assert.match(raw.toString('latin1'), /^DKIM-Signature: /, 'the signature is the first field');

    const result = await dkimVerify(raw, { resolver: resolve });
    const outcomes = result.results.map((r) => [r.signingDomain, r.status.result, r.status.aligned]);
    assert.deepEqual(
      outcomes.map((o) => o.slice(0, 2)),
      [
        ['customer.example', 'pass'],
        ['customer.example', 'pass'],
      ],
    );
    const header = raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
    assert.match(header, /a=rsa-sha256/);
    assert.match(header, /a=ed25519-sha256/);
    assert.match(
      header.replace(/\r\n\s+/g, ''),
      /h=From:To:Subject:Date:Message-ID:From;/,
      'From oversigned',
    );
    assert.doesNotMatch(header, /;\s*l=/);

    const altered = Buffer.from(raw.toString('latin1').replace('end\r\n', 'END\r\n'), 'latin1');
    const failed = await dkimVerify(altered, { resolver: resolve });
    assert.deepEqual(
      failed.results.map((r) => r.status.result),
      ['neutral', 'neutral'],
      JSON.stringify(failed.results.map((r) => r.status)),
    );
    assert.ok(failed.results.every((r) => /body hash/.test(r.status.comment ?? '')));

    const accepted = t.logs.events('accepted').at(-1);
    assert.deepEqual(accepted?.dkim, {
      domain: 'customer.example',
      selector: 's1',
      algorithms: ['rsa-sha256', 'ed25519-sha256'],
    });
  });

  it('signs a subdomain with its parent’s key, and any other domain with the default signer', async () => {
    const sub = await send('news@mail.customer.example', 'hello\r\n');
    const subResult = await dkimVerify(sub, { resolver: resolve });
    assert.deepEqual(
      subResult.results.map((r) => [r.signingDomain, r.status.result]),
      [
        ['customer.example', 'pass'],
        ['customer.example', 'pass'],
      ],
    );
    const other = await send('someone@unconfigured.example', 'hello\r\n');
    const otherResult = await dkimVerify(other, { resolver: resolve });
    assert.deepEqual(
      otherResult.results.map((r) => [r.signingDomain, r.status.result]),
      [['provider.example', 'pass']],
    );
    const counted = await t.relay.metrics.dkimSignaturesTotal.get();
    const signed = counted.values.find((v) => v.labels.result === 'signed');
    assert.ok((signed?.value ?? 0) >= 2);
  });

  it('verifies with dkimpy, a second implementation', {
    skip: skipUnlessPresent(
      !dkimpy &&
        '/usr/bin/python3 cannot import dkim and nacl: install python3-dkim and python3-nacl (scripts/test-deps.sh)',
    ),
  }, async () => {
    const raw = await send('alice@customer.example', 'checked twice\r\n');
    const script = [
      'import sys, json, dkim',
      'records = json.loads(sys.argv[1])',
      'def dnsfunc(name, timeout=5):',
      '    return records.get(name.decode().rstrip("."), "").encode()',
      'msg = sys.stdin.buffer.read()',
      'ok = [dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc) for i in range(2)]',
      'bad = dkim.verify(msg.replace(b"checked twice", b"checked thrice"), dnsfunc=dnsfunc)',
      'print(json.dumps({"ok": ok, "bad": bad}))',
    ].join('\n');
    const out = execFileSync(PYTHON, ['-c', script, JSON.stringify(Object.fromEntries(records))], {
      input: raw,
    });
    assert.deepEqual(JSON.parse(out.toString()), { ok: [true, true], bad: false });
  });
});

describe('DKIM keys on reload', () => {
  it('a reload whose key does not load changes nothing: the old key goes on signing', async () => {
    const dns = await startDnsServer();
    const sink = await startSmtpSink();
    const keyDir = await mkdtemp(join(tmpdir(), 'sluice-dkim-reload-'));
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(keyDir, 'rsa.pem');
    await writeFile(keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    dns.setTxt('s1._domainkey.customer.example', [dkimRecord(pair.publicKey)]);
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([dns.address]);
    const t = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
        dkim: { keys: [{ domain: 'customer.example', selector: 's1', privateKeyFile: keyFile }] },
      },
    });
    try {
      const users = { users: [...t.relay.users.values()] };
      // the mounted key turns into something that is no key (a Secret updated with garbage),
      // and a second key is added that is too short: both are named, neither applies
      await writeFile(keyFile, 'not a key\n');
      const short = generateKeyPairSync('rsa', { modulusLength: 512 });
      await writeFile(
        join(keyDir, 'short.pem'),
        short.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      );
      const reloaded = validateRelayConfig(
        {
          ...t.relay.config,
          hostname: 'renamed.test',
          dkim: {
            keys: [
              { domain: 'customer.example', selector: 's1', privateKeyFile: keyFile },
              { domain: 'other.example', selector: 's2', privateKeyFile: join(keyDir, 'short.pem') },
            ],
          },
        },
        'config',
      );
      await assert.rejects(t.relay.apply(reloaded, users), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          `dkim.keys[0].privateKeyFile: ${keyFile} is not a PEM private key`,
          'dkim.keys[1].privateKeyFile: an RSA key of 512 bits is too short (at least 1024; 2048 advised)',
        ]);
        return true;
      });
      assert.equal(t.relay.config.hostname, 'relay.test', 'nothing of the reload applied');

      const c = await authenticated(t.port('plain'), 'alice');
      const replies = await c.sendRaw(
        'alice@customer.example',
        ['bob@elsewhere.example'],
        [
          'From: alice@customer.example',
          'To: bob@elsewhere.example',
          'Subject: after a bad reload',
          '',
          'still signed',
          '',
        ].join('\r\n'),
      );
      assert.equal(replies.at(-1)?.code, 250);
      await c.quit();
      await sink.waitForMessages(1);
      const raw = sink.messages[0]?.raw ?? Buffer.alloc(0);
      const result = await dkimVerify(raw, { resolver: (name: string) => resolver.resolveTxt(name) });
      assert.deepEqual(
        result.results.map((r) => [r.signingDomain, r.selector, r.status.result]),
        [['customer.example', 's1', 'pass']],
      );
    } finally {
      await t.close();
      await sink.close();
      await dns.close();
      await rm(keyDir, { recursive: true, force: true });
    }
  });
});
