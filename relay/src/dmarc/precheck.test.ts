// DMARC pre-check end to end: a real SMTP session into the relay, DMARC, SPF and address
// records served by a real DNS server on loopback, and each outcome seen as the client and
// the SRE see it (the reply at the end of DATA, the counter, the log line).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import {
  authenticated,
  PLAIN_LISTENER,
  startDnsServer,
  startRedisServer,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
} from '../testing/index.ts';

const EGRESS = '192.0.2.10';

describe('DMARC pre-check', () => {
  let dns: TestDnsServer;
  let t: TestRelay;
  let keyDir: string;

  before(async () => {
    dns = await startDnsServer();
    keyDir = await mkdtemp(join(tmpdir(), 'sluice-dmarc-'));
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(
      join(keyDir, 'rsa.pem'),
      pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    );
    // a mailbox provider's domain that the relay cannot sign for
    dns.setTxt('_dmarc.gmail.example', ['v=DMARC1; p=reject; rua=mailto:dmarc@gmail.example']);
    // a customer domain with a key at the relay
    dns.setTxt('_dmarc.customer.example', ['v=DMARC1; p=quarantine']);
    // a domain whose SPF authorizes the relay's egress address, and one whose SPF does not
    dns.setTxt('_dmarc.spf.example', ['v=DMARC1; p=reject']);
    dns.setTxt('spf.example', [`v=spf1 ip4:${EGRESS} -all`]);
    dns.setTxt('_dmarc.other-spf.example', ['v=DMARC1; p=reject']);
    dns.setTxt('other-spf.example', ['v=spf1 ip4:198.51.100.7 -all']);
    // p=none, and a subdomain policy (sp=) found at the organizational domain
    dns.setTxt('_dmarc.monitor.example', ['v=DMARC1; p=none']);
    dns.setTxt('_dmarc.org.example', ['v=DMARC1; p=none; sp=reject']);
    // strict DKIM alignment: a signature by the parent domain does not align a subdomain
    dns.setTxt('_dmarc.strict.example', ['v=DMARC1; p=reject; adkim=s']);
    // DNS trouble: a server that fails, one that never answers
    dns.setBehaviour('_dmarc.broken.example', 'servfail');
    dns.setBehaviour('_dmarc.silent.example', 'drop');
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        dkim: {
          keys: [
            { domain: 'customer.example', selector: 's1', privateKeyFile: join(keyDir, 'rsa.pem') },
            { domain: 'strict.example', selector: 's1', privateKeyFile: join(keyDir, 'rsa.pem') },
          ],
        },
        dmarcPrecheck: { action: 'reject', resolvers: [dns.address], timeoutMs: 300, egressIps: [EGRESS] },
      },
    });
  });
  after(async () => {
    await t.close();
    await dns.close();
    await rm(keyDir, { recursive: true, force: true });
  });

  async function send(envelope: string, from: string): Promise<{ code: number; text: string }> {
    const c = await authenticated(t.port('plain'), 'alice');
    try {
      const replies = await c.sendRaw(
        envelope,
        ['bob@elsewhere.example'],
        `From: ${from}\r\nTo: bob@elsewhere.example\r\nSubject: scan\r\n\r\nscanned document\r\n`,
      );
      await c.quit();
      const last = replies.at(-1);
      assert.ok(last);
      return last;
    } finally {
      c.destroy();
    }
  }

  async function counted(result: string, action: string): Promise<number> {
    const metric = await t.relay.metrics.dmarcPrecheckTotal.get();
    return metric.values.find((v) => v.labels.result === result && v.labels.action === action)?.value ?? 0;
  }

  it('refuses mail as someone@gmail that nothing can align, saying what to do', async () => {
    const reply = await send('scanner@customer.example', 'Scanner <someone@gmail.example>');
    assert.equal(reply.code, 550);
    assert.equal(
      reply.text,
      '5.7.1 The DMARC policy of gmail.example is reject, and this message would fail it (the relay has no DKIM key for gmail.example; MAIL FROM domain customer.example is not aligned): send as an address of a domain set up with this relay (its DKIM key published in DNS)',
    );
    assert.equal(await counted('would_fail', 'reject'), 1);
    const rejected = t.logs.events('rejected').at(-1);
    assert.equal(rejected?.reason, 'dmarc_would_fail');
    assert.equal(rejected?.stage, 'data');
    const warned = t.logs.events('dmarc_precheck').at(-1);
    assert.equal(warned?.domain, 'gmail.example');
    assert.equal(warned?.policy, 'reject');
  });

  it('accepts what the relay’s signature aligns, or SPF of the MAIL FROM domain for its egress address', async () => {
    assert.equal((await send('bounce@customer.example', 'alice@customer.example')).code, 250);
    assert.equal((await send('bounce@elsewhere.example', 'news@mail.customer.example')).code, 250);
    assert.equal(await counted('aligned_dkim', 'none'), 2);
    assert.equal((await send('bounce@spf.example', 'alice@spf.example')).code, 250);
    assert.equal(await counted('aligned_spf', 'none'), 1);
    assert.deepEqual(t.logs.events('accepted').at(-1)?.dmarc, { 'spf.example': 'aligned_spf' });
  });

  it('adkim=s: the parent domain’s signature aligns the domain itself, not its subdomain', async () => {
    assert.equal((await send('bounce@elsewhere.example', 'alice@strict.example')).code, 250);
    const sub = await send('bounce@elsewhere.example', 'news@mail.strict.example');
    assert.equal(sub.code, 550);
    assert.match(sub.text, /signed for strict\.example, which is not aligned with mail\.strict\.example/);
  });

  it('refuses when the aligned MAIL FROM domain’s SPF does not authorize the relay, naming the SPF fix', async () => {
    const reply = await send('bounce@other-spf.example', 'alice@other-spf.example');
    assert.equal(reply.code, 550);
    assert.match(reply.text, /^5\.7\.1 The DMARC policy of other-spf\.example is reject,/);
    assert.match(reply.text, /SPF of other-spf\.example gives fail for the relay's address 192\.0\.2\.10/);
    assert.match(reply.text, /or authorize the relay in the SPF record of other-spf\.example$/);
  });

  it('uses sp= of the organizational domain for a subdomain, and lets p=none and no record pass', async () => {
    const sub = await send('bounce@elsewhere.example', 'x@mail.org.example');
    assert.equal(sub.code, 550);
    assert.match(sub.text, /^5\.7\.1 The DMARC policy of mail\.org\.example is reject,/);
    const before = await counted('no_policy', 'none');
    assert.equal((await send('bounce@elsewhere.example', 'x@monitor.example')).code, 250);
    assert.equal((await send('bounce@elsewhere.example', 'x@unpublished.example')).code, 250);
    assert.equal(await counted('no_policy', 'none'), before + 2);
  });

  it('accepts when DNS fails or times out (a DNS fault never refuses mail) and counts dns_error', async () => {
    assert.equal((await send('bounce@elsewhere.example', 'x@broken.example')).code, 250);
    assert.equal((await send('bounce@elsewhere.example', 'x@silent.example')).code, 250);
    assert.equal(await counted('dns_error', 'none'), 2);
    const logged = t.logs.events('dmarc_precheck').filter((l) => l.result === 'dns_error');
    assert.deepEqual(
      logged.map((l) => l.domain),
      ['broken.example', 'silent.example'],
    );
  });

  it('warn accepts what reject refuses, and logs and counts it; off looks nothing up', async () => {
    const users = { users: [...t.relay.users.values()] };
    const withAction = (action: string) =>
      validateRelayConfig(
        { ...t.relay.config, dmarcPrecheck: { ...t.relay.config.dmarcPrecheck, action } },
        'config',
      );
    await t.relay.apply(withAction('warn'), users);
    assert.equal((await send('scanner@customer.example', 'someone@gmail.example')).code, 250);
    assert.equal(await counted('would_fail', 'warn'), 1);
    assert.equal(t.logs.events('dmarc_precheck').at(-1)?.action, 'warn');
    await t.relay.apply(withAction('off'), users);
    const queries = dns.queries('_dmarc.gmail.example');
    assert.equal((await send('scanner@customer.example', 'someone@gmail.example')).code, 250);
    assert.equal(dns.queries('_dmarc.gmail.example'), queries);
    await t.relay.apply(withAction('reject'), users);
    assert.equal((await send('scanner@customer.example', 'someone@gmail.example')).code, 550);
  });
});

describe('DMARC pre-check answers in the shared state', () => {
  it('one DNS query serves two relays sharing a Redis', async () => {
    const dns = await startDnsServer();
    const redis = await startRedisServer();
    dns.setTxt('_dmarc.gmail.example', ['v=DMARC1; p=reject']);
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      state: { backend: 'redis', namespace: 'dmarc', redis: { nodes: redis.nodes, commandTimeoutMs: 300 } },
      dmarcPrecheck: { action: 'reject', resolvers: [dns.address], timeoutMs: 1000 },
    };
    const a = await startTestRelay({ config });
    const b = await startTestRelay({ config });
    try {
      for (const t of [a, b]) {
        const c = await authenticated(t.port('plain'), 'alice');
        const replies = await c.sendRaw(
          'scanner@customer.example',
          ['bob@elsewhere.example'],
          'From: someone@gmail.example\r\nSubject: scan\r\n\r\nscan\r\n',
        );
        await c.quit();
        assert.equal(replies.at(-1)?.code, 550);
      }
      assert.equal(dns.queries('_dmarc.gmail.example'), 1, "the second relay read the first one's answer");
    } finally {
      await a.close();
      await b.close();
      await redis.stop();
      await dns.close();
    }
  });
});
