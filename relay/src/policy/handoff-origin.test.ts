import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateRelayConfig } from '../config/validate.ts';
import { PASSWORD, PLAIN_LISTENER, RawSmtpClient, startTestRelay, testUser } from '../testing/index.ts';
import { scrapeMetrics } from '../testing/metrics-scrape.ts';
import { handoffFromOutside } from './handoff-origin.ts';

const HANDOFF_USER = 'sluice-internal-handoff';

function handoff(fromNetworks?: string[]) {
  return {
    host: 'relay.test',
    port: 587,
    tls: 'none',
    username: HANDOFF_USER,
    passwordFile: '/nonexistent/handoff-password',
    ...(fromNetworks ? { fromNetworks } : {}),
  };
}

/** AUTH PLAIN from 127.0.0.1 in a fresh session: the reply the client sees. */
async function auth(port: number, user: string): Promise<string> {
  const c = await RawSmtpClient.connect(port);
  await c.greeting();
  await c.ehlo();
  const reply = await c.authPlain(user, PASSWORD);
  await c.quit();
  return `${reply.code} ${reply.text}`;
}

describe('the handoff account', () => {
  it('defaults to the private networks and names the pod network as a list of CIDRs', () => {
    const base = { listeners: [{ name: 'submission', port: 587 }], spoolDir: 's', usersFile: 'u' };
    const config = validateRelayConfig({ ...base, drain: { handoff: handoff() } }, 'c');
    assert.deepEqual(config.drain.handoff?.fromNetworks, [
      '10.0.0.0/8',
      '172.16.0.0/12',
      '192.168.0.0/16',
      'fc00::/7',
    ]);
    assert.throws(
      () => validateRelayConfig({ ...base, drain: { handoff: handoff(['10.0.0.0/33']) } }, 'c'),
      /c: drain\.handoff\.fromNetworks\[0\]: got "10\.0\.0\.0\/33", expected an IP address or CIDR network/,
    );
    assert.equal(handoffFromOutside(config, HANDOFF_USER, '10.42.1.7'), false);
    assert.equal(
      handoffFromOutside(config, HANDOFF_USER, '::ffff:10.42.1.7'),
      false,
      'IPv4 on a dual-stack socket',
    );
    assert.equal(handoffFromOutside(config, HANDOFF_USER, '203.0.113.9'), true);
    assert.equal(handoffFromOutside(config, 'shop', '203.0.113.9'), false, 'other users are not affected');
  });

  it('AUTH as the handoff account from outside its networks fails like a wrong password, and is logged', async (t) => {
    const relay = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        drain: { handoff: handoff(['10.0.0.0/8', 'fd00::/8']) },
      },
      users: [await testUser('shop'), await testUser(HANDOFF_USER)],
    });
    t.after(() => relay.close());
    const port = relay.port('plain');

    assert.equal(await auth(port, HANDOFF_USER), '535 5.7.8 Authentication credentials invalid');
    const refused = relay.logs.events('handoff_auth_refused');
    assert.equal(refused.length, 1);
    assert.equal(refused[0]?.user, HANDOFF_USER);
    assert.equal(refused[0]?.clientIp, '127.0.0.1');
    const rejected = relay.logs.events('rejected').filter((l) => l.reason === 'auth_failed');
    assert.equal(rejected.length, 1);
    const metrics = await scrapeMetrics(relay.relay.adminPort);
    assert.equal(metrics.value('sluice_smtp_auth_total', { result: 'failure' }), 1);
    assert.equal(metrics.value('sluice_smtp_auth_total', { result: 'success' }), 0);

    assert.equal(await auth(port, 'shop'), '235 2.7.0 Authentication successful', 'other users still log in');

    // the same account from inside its networks (loopback added) is accepted
    const config = relay.relay.config;
    const inside = validateRelayConfig({ ...config, drain: { handoff: handoff(['127.0.0.0/8']) } }, 'c');
    await relay.relay.apply(inside, { users: [await testUser('shop'), await testUser(HANDOFF_USER)] });
    assert.equal(await auth(port, HANDOFF_USER), '235 2.7.0 Authentication successful');
  });
});
