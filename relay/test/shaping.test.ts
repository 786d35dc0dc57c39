// Shaping per destination group, shared: two relays on one Redis deliver to domains whose
// MX hosts are Google's and Yahoo's names (answered by a loopback DNS server, served by a
// real sink). Between them they hold one connection limit per group; a throttling reply
// one relay gets slows the group down, or suspends it, on the other as well.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  PLAIN_LISTENER,
  type RedisServerHandle,
  type SmtpSink,
  startDnsServer,
  startRedisServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

async function submit(t: TestRelay, to: string): Promise<number> {
  const c = await authenticated(t.port('plain'), 'alice');
  const replies = await c.sendRaw('alice@sender.test', [to], 'Subject: s\r\n\r\nx\r\n');
  await c.quit();
  return replies.at(-1)?.code ?? 0;
}

async function metric(t: TestRelay, name: string): Promise<string> {
  return t.relay.metrics.registry.getSingleMetricAsString(name);
}

function value(text: string, labels: string): number {
  const line = text.split('\n').find((l) => l.includes(`{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('shaping shared by two relays', () => {
  let redis: RedisServerHandle;
  let dns: TestDnsServer;
  let mx: SmtpSink;
  let a: TestRelay;
  let b: TestRelay;
  before(async () => {
    redis = await startRedisServer();
    dns = await startDnsServer();
    mx = await startSmtpSink({ host: '127.0.0.2' });
    // Google's and Yahoo's MX names, on loopback: the groups go by the MX host's name
    dns.setA('aspmx.l.google.com', ['127.0.0.2']);
    dns.setA('mta5.am0.yahoodns.net', ['127.0.0.2']);
    for (const d of ['g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8']) {
      dns.setMx(`${d}.test`, [{ exchange: 'aspmx.l.google.com', priority: 5 }]);
    }
    for (const d of ['y1', 'y2'])
      dns.setMx(`${d}.test`, [{ exchange: 'mta5.am0.yahoodns.net', priority: 1 }]);
    dns.setA('mx.slow.example', ['127.0.0.2']);
    for (const d of ['s1', 's2', 's3', 's4'])
      dns.setMx(`${d}.test`, [{ exchange: 'mx.slow.example', priority: 1 }]);
    dns.setA('mx.newconn.example', ['127.0.0.2']);
    for (const d of ['n1', 'n2']) dns.setMx(`${d}.test`, [{ exchange: 'mx.newconn.example', priority: 1 }]);
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      state: { backend: 'redis', namespace: 'shape', redis: { nodes: redis.nodes } },
      delivery: { resolvers: [dns.address], port: mx.port, allowLocalAddresses: true },
      shaping: {
        groups: [
          { name: 'google', mxSuffixes: ['.google.com'], connections: 2, messagesPerConnection: 1 },
          { name: 'yahoo', mxSuffixes: ['.yahoodns.net'] },
          // one message a minute for both relays together
          { name: 'slow', mxSuffixes: ['.slow.example'], messagesPerSecond: 1 / 60 },
          { name: 'newconn', mxSuffixes: ['.newconn.example'], connectionsPerMinute: 1 },
        ],
        maxWaitSeconds: 60,
      },
    };
    a = await startTestRelay({ deliver: true, config });
    b = await startTestRelay({ deliver: true, config });
  });
  after(async () => {
    await a.close();
    await b.close();
    await mx.close();
    await dns.close();
    await redis.stop();
  });

  it('hold one connection limit per group between them', async () => {
    const release = mx.holdData();
    // four domains from each relay: unshaped, each relay would open a connection to each
    const codes = await Promise.all([
      ...['g1', 'g2', 'g3', 'g4'].map((d) => submit(a, `x@${d}.test`)),
      ...['g5', 'g6', 'g7', 'g8'].map((d) => submit(b, `x@${d}.test`)),
    ]);
    assert.deepEqual(codes, [250, 250, 250, 250, 250, 250, 250, 250]);
    const waits = async () =>
      value(await metric(a, 'sluice_shaping_waits_total'), 'group="google",limit="connections"') +
      value(await metric(b, 'sluice_shaping_waits_total'), 'group="google",limit="connections"');
    let waited = 0;
    await waitFor('two messages held at the MX while the other deliveries wait for a slot', async () => {
      waited = await waits();
      return mx.held === 2 && waited >= 2;
    });
    assert.equal(mx.openConnections, 2, 'the group limit is held across both relays');
    release();
    await mx.waitForMessages(8, 30_000);
    assert.equal(mx.maxOpenConnections, 2);
    const limit = await metric(b, 'sluice_shaping_limit');
    assert.equal(value(limit, 'group="google",limit="connections"'), 2);
    assert.equal(value(limit, 'group="google",limit="messages_per_connection"'), 1);
  });

  it('a throttling reply to one relay slows the group down on the other too', async () => {
    mx.setRecipientReply('slow@g1.test', {
      code: 451,
      text: '4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address',
    });
    assert.equal(await submit(a, 'slow@g1.test'), 250);
    await waitFor('relay a slows google down', () =>
      a.logs.events('shaping_throttled').some((l) => l.group === 'google' && l.action === 'slow'),
    );
    assert.equal(value(await metric(a, 'sluice_shaping_throttles_total'), 'group="google",action="slow"'), 1);
    const before = mx.messages.length;
    assert.equal(await submit(b, 'ok@g2.test'), 250);
    await mx.waitForMessages(before + 1, 10_000);
    const limit = await metric(b, 'sluice_shaping_limit');
    assert.equal(value(limit, 'group="google",limit="connections"'), 1, 'relay b holds the slowed limit');
    assert.equal(value(limit, 'group="google",limit="messages_per_second"'), 1 / 60);
    assert.equal(value(await metric(b, 'sluice_shaping_throttled'), 'group="google",action="slow"'), 1);
  });

  it("Yahoo's [TSS04] to one relay suspends the group on both: deferred without a connection", async () => {
    mx.setRecipientReply('t@y1.test', {
      code: 451,
      text: '4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected volume or user complaints',
    });
    assert.equal(await submit(a, 't@y1.test'), 250);
    await waitFor('relay a defers the throttled recipient', () =>
      a.logs.events('deferred').some((l) => l.recipient === 't@y1.test' && l.class === 'rate-limited'),
    );
    await waitFor('relay a suspends yahoo', () =>
      a.logs.events('shaping_throttled').some((l) => l.group === 'yahoo' && l.action === 'suspend'),
    );
    const connections = mx.connections;
    assert.equal(await submit(b, 'u@y2.test'), 250);
    await waitFor('relay b defers mail to yahoo', () =>
      b.logs.events('deferred').some((l) => l.recipient === 'u@y2.test'),
    );
    const line = b.logs.events('deferred').find((l) => l.recipient === 'u@y2.test');
    assert.match(
      String(line?.response),
      /^delivery to yahoo is suspended until .* after it answered: 451 4\.7\.0 \[TSS04\]/,
    );
    assert.equal(line?.status, '4.7.0');
    assert.equal(mx.connections, connections, 'relay b did not connect');
    assert.equal(
      value(await metric(b, 'sluice_shaping_deferrals_total'), 'group="yahoo",reason="suspended"'),
      1,
    );
  });

  it('hold one message rate per group between them: the rest is deferred, not bounced', async () => {
    const before = mx.messages.length;
    // maxWaitSeconds is 60: mail over the rate would wait, so the deferral is seen by lowering it
    for (const t of [a, b]) {
      const config = { ...t.relay.config, shaping: { ...t.relay.config.shaping, maxWaitSeconds: 0 } };
      await t.relay.apply(config, { users: [...t.relay.users.values()] });
    }
    const codes = [
      await submit(a, 'x@s1.test'),
      await submit(b, 'x@s2.test'),
      await submit(a, 'x@s3.test'),
      await submit(b, 'x@s4.test'),
    ];
    assert.deepEqual(codes, [250, 250, 250, 250]);
    const ours = (event: string) =>
      [a, b].flatMap((t) => t.logs.events(event)).filter((l) => /^x@s\d\.test$/.test(String(l.recipient)));
    await waitFor(
      'one delivered, three deferred',
      () => ours('deferred').length === 3 && ours('delivered').length === 1,
    );
    assert.equal(mx.messages.length, before + 1, 'one message a minute between both relays');
    for (const line of ours('deferred')) {
      assert.match(
        String(line.response),
        /^the message rate to slow \(0\.016\d*\/s for all relays\) left no room in 0 s$/,
      );
      assert.equal(line.status, '4.4.5');
    }
    const rate = async (t: TestRelay) =>
      value(await metric(t, 'sluice_shaping_deferrals_total'), 'group="slow",reason="rate"');
    assert.equal((await rate(a)) + (await rate(b)), 3);
    assert.equal(ours('bounced').length, 0);
  });

  it('hold one rate of new connections per group between them', async () => {
    // maxWaitSeconds is 0 since the test before; each domain is a connection of its own
    assert.equal(await submit(a, 'x@n1.test'), 250);
    assert.equal(await submit(b, 'x@n2.test'), 250);
    const ours = (event: string) =>
      [a, b].flatMap((t) => t.logs.events(event)).filter((l) => /^x@n\d\.test$/.test(String(l.recipient)));
    await waitFor(
      'one delivered, one deferred',
      () => ours('deferred').length === 1 && ours('delivered').length === 1,
    );
    assert.match(
      String(ours('deferred')[0]?.response),
      /^the new connections to newconn \(1 a minute for all relays\) left no room in 0 s$/,
    );
  });
});

describe('shaping per destination group and egress address, shared by two relays', () => {
  let redis: RedisServerHandle;
  let dns: TestDnsServer;
  let mx: SmtpSink;
  let a: TestRelay;
  let b: TestRelay;
  // two egress addresses on loopback that both relays bind their connections to
  const EGRESS = ['127.0.0.3', '127.0.0.4'];
  before(async () => {
    redis = await startRedisServer();
    dns = await startDnsServer();
    mx = await startSmtpSink({ host: '127.0.0.2' });
    dns.setA('aspmx.l.google.com', ['127.0.0.2']);
    for (const d of ['g1', 'g2', 'g3', 'g4', 'g5', 'g6']) {
      dns.setMx(`${d}.test`, [{ exchange: 'aspmx.l.google.com', priority: 5 }]);
    }
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      state: { backend: 'redis', namespace: 'egress', redis: { nodes: redis.nodes } },
      delivery: {
        resolvers: [dns.address],
        port: mx.port,
        allowLocalAddresses: true,
        egressAddresses: EGRESS,
      },
      shaping: {
        groups: [{ name: 'google', mxSuffixes: ['.google.com'], connections: 1, messagesPerConnection: 1 }],
        maxWaitSeconds: 60,
      },
    };
    a = await startTestRelay({ deliver: true, config });
    b = await startTestRelay({ deliver: true, config });
  });
  after(async () => {
    await a.close();
    await b.close();
    await mx.close();
    await dns.close();
    await redis.stop();
  });

  it('hold one connection limit per egress address between them, and send from each address', async () => {
    const release = mx.holdData();
    const codes = await Promise.all([
      ...['g1', 'g2', 'g3'].map((d) => submit(a, `x@${d}.test`)),
      ...['g4', 'g5', 'g6'].map((d) => submit(b, `x@${d}.test`)),
    ]);
    assert.deepEqual(codes, [250, 250, 250, 250, 250, 250]);
    const waits = async () =>
      value(await metric(a, 'sluice_shaping_waits_total'), 'group="google",limit="connections"') +
      value(await metric(b, 'sluice_shaping_waits_total'), 'group="google",limit="connections"');
    await waitFor(
      'one message held per egress address while the other deliveries wait for a slot',
      async () => mx.held === 2 && (await waits()) >= 1,
    );
    assert.equal(mx.openConnections, 2, "one connection per egress address: the group's limit is 1 for each");
    release();
    await mx.waitForMessages(6, 30_000);
    assert.deepEqual(
      [...mx.maxOpenConnectionsFrom.entries()].sort(),
      EGRESS.map((address) => [address, 1]),
      'never two connections at once from one egress address, across both relays',
    );
    const from = mx.messages.map((m) => m.clientAddress);
    for (const address of EGRESS) assert.ok(from.includes(address), `mail was sent from ${address}`);
    assert.deepEqual(
      [...new Set(from)].sort(),
      EGRESS,
      'every connection came from a configured egress address',
    );
    // The helpdesk reads which address sent each delivery from the relays' log lines.
    const delivered = await waitFor('a delivered line per message', () => {
      const lines = [...a.logs.events('delivered'), ...b.logs.events('delivered')];
      return lines.length === 6 && lines;
    });
    for (const line of delivered) assert.equal(line.remoteAddress, '127.0.0.2', 'the MX address');
    assert.deepEqual(
      delivered.map((l) => `${l.recipient} ${l.localAddress}`).sort(),
      mx.messages.map((m) => `${m.recipients[0]} ${m.clientAddress}`).sort(),
      'each delivered line names the egress address that message was sent from',
    );
  });
});
