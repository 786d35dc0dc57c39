// Abuse detection on recorded traffic: a real relay in-process, real SMTP sessions from
// several loopback addresses over 25 hours of an injected clock; then the flags as a
// metric, a log event and on GET /abuse, and the automatic suspension as a client sees it.
// The second part runs two relays on one real Redis: one flag for the cluster, and the
// other relay refuses the suspended user too.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  type RedisServerHandle,
  session,
  startRedisServer,
  startTestRelay,
  type TestRelay,
  testUser,
  transaction,
} from '../testing/index.ts';
import type { AbuseReport } from './watch.ts';

const TOKEN = 'abuse-test-token';
const HOUR = 3_600_000;
const ABUSE = {
  volumeFactor: 3,
  volumeFloor: 5,
  maxClientIps: 2,
  rejectRatio: 0.5,
  minAttempts: 4,
  autoSuspend: true,
  // the tests evaluate by hand; the timers must not run a round of their own
  intervalSeconds: 3600,
};

async function metric(t: TestRelay, name: string): Promise<Record<string, number>> {
  const m = await t.relay.metrics.registry.getSingleMetric(name)?.get();
  return Object.fromEntries((m?.values ?? []).map((v) => [String(v.labels.kind ?? ''), v.value]));
}

const mail = (from: string, n = 1) => Array.from({ length: n }, () => ({ from, to: ['x@example.net'] }));

describe('abuse detection on recorded traffic', () => {
  let t: TestRelay;
  let dir: string;
  let url: string;
  // the current hour's last minute: the previous hour hardly overlaps the last 60 minutes
  const NOW = Date.parse('2025-07-01T10:59:00Z');
  let now = NOW;
  let openSession: RawSmtpClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-abuse-'));
    await writeFile(join(dir, 'token'), TOKEN);
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        usage: { flushIntervalSeconds: 60 },
        abuse: ABUSE,
      },
      users: [
        await testUser('alice'),
        await testUser('erin'),
        await testUser('carol'),
        await testUser('dave', { allowedSenders: ['@dave.example'] }),
      ],
      now: () => now,
      fsync: false, // durability is not under test here, and 70 fsyncs are slow
    });
    url = `http://127.0.0.1:${t.relay.adminPort}`;
    const port = t.port('plain');
    // The 24 hours before: alice sends 1 message an hour, erin 2 (each over one long session).
    const [alice, erin] = [await authenticated(port, 'alice'), await authenticated(port, 'erin')];
    for (let h = 24; h >= 1; h--) {
      now = NOW - h * HOUR;
      for (const m of mail('alice@example.com')) assert.equal(await transaction(alice, m), 250);
      for (const m of mail('erin@example.com', 2)) assert.equal(await transaction(erin, m), 250);
    }
    await Promise.all([alice.quit(), erin.quit()]);
    now = NOW;
    // This hour both send 6: 6× alice's median, 3× erin's.
    assert.deepEqual(
      await session(port, 'alice', mail('alice@example.com', 6)),
      [250, 250, 250, 250, 250, 250],
    );
    assert.deepEqual(
      await session(port, 'erin', mail('erin@example.com', 6)),
      [250, 250, 250, 250, 250, 250],
    );
    // carol logs in from three addresses
    for (const from of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) {
      assert.deepEqual(await session(port, 'carol', [], { from }), []);
    }
    // dave: three senders refused, one message accepted
    assert.deepEqual(
      await session(port, 'dave', [...mail('boss@bank.example', 3), ...mail('dave@dave.example')]),
      [553, 553, 553, 250],
    );
    // alice is in a session when the flag comes
    openSession = await RawSmtpClient.connect(port);
    await openSession.greeting();
    await openSession.ehlo();
    assert.equal((await openSession.authPlain('alice', PASSWORD)).code, 235);
    await t.relay.usage?.flush();
  });
  after(async () => {
    openSession?.destroy();
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('flags each kind once: a metric without user label, a log event with the numbers', async () => {
    const found = await t.relay.abuse?.tick();
    assert.deepEqual(
      found?.map((f) => [f.user, f.kind]).sort(),
      [
        ['alice', 'volume_spike'],
        ['carol', 'many_client_ips'],
        ['dave', 'mostly_rejected'],
      ],
      'erin sends as much as alice, but it is within her own baseline',
    );
    assert.deepEqual(await metric(t, 'sluice_abuse_flags_total'), {
      volume_spike: 1,
      many_client_ips: 1,
      mostly_rejected: 1,
      invalid_recipients: 0,
      spam_blocked: 0,
    });
    const text = await t.relay.metrics.registry.getSingleMetricAsString('sluice_abuse_flags_total');
    assert.doesNotMatch(text, /alice|carol|dave/, 'no user in any label');
    const events = t.logs.events('abuse_suspected');
    assert.deepEqual(events.map((e) => [e.user, e.kind, e.reason]).sort(), [
      ['alice', 'volume_spike', 'VolumeSpike'],
      ['carol', 'many_client_ips', 'ManyClientIps'],
      ['dave', 'mostly_rejected', 'MostlyRejected'],
    ]);
    const alice = events.find((e) => e.user === 'alice');
    assert.deepEqual(alice?.numbers, { messages: 6, baselineMedian: 1, factor: 3, floor: 5 });
    assert.equal(alice?.msg, '6 messages in the last hour, over 3× the median of the 24 hours before (1)');
    assert.deepEqual(events.find((e) => e.user === 'carol')?.numbers, { distinctClientIps: 3, limit: 2 });
    assert.deepEqual(events.find((e) => e.user === 'dave')?.numbers, {
      rejected: 3,
      attempts: 4,
      ratio: 0.75,
      limit: 0.5,
    });

    // the next round finds the same, and raises nothing again
    assert.equal((await t.relay.abuse?.tick())?.length, 3);
    assert.equal(t.logs.events('abuse_suspected').length, 3);
    assert.equal((await metric(t, 'sluice_abuse_flags_total')).volume_spike, 1);
    assert.deepEqual(await metric(t, 'sluice_abuse_flagged_users'), {
      volume_spike: 1,
      many_client_ips: 1,
      mostly_rejected: 1,
      invalid_recipients: 0,
      spam_blocked: 0,
    });
    assert.equal((await metric(t, 'sluice_abuse_suspended_users'))[''], 3);
  });

  it('shows flags and suspensions on GET /abuse', async () => {
    const res = await fetch(`${url}/abuse`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const report = (await res.json()) as AbuseReport;
    assert.equal(report.autoSuspend, true);
    assert.deepEqual(report.flags.map((f) => [f.user, f.kind, f.detectedAt, f.expiresAt]).sort(), [
      ['alice', 'volume_spike', '2025-07-01T10:59:00.000Z', '2025-07-01T11:59:00.000Z'],
      ['carol', 'many_client_ips', '2025-07-01T10:59:00.000Z', '2025-07-01T11:59:00.000Z'],
      ['dave', 'mostly_rejected', '2025-07-01T10:59:00.000Z', '2025-07-01T11:59:00.000Z'],
    ]);
    assert.deepEqual(report.suspended.map((s) => [s.user, s.reason, s.until]).sort(), [
      ['alice', 'VolumeSpike', '2025-07-02T10:59:00.000Z'],
      ['carol', 'ManyClientIps', '2025-07-02T10:59:00.000Z'],
      ['dave', 'MostlyRejected', '2025-07-02T10:59:00.000Z'],
    ]);
    assert.equal((await fetch(`${url}/abuse`)).status, 401);
  });

  it('refuses a suspended user like a suspended account, until the suspension is lifted', async () => {
    assert.deepEqual(await session(t.port('plain'), 'alice', []), [535]);
    const refused = t.logs
      .events('rejected')
      .find((e) => e.reason === 'auth_suspended' && e.user === 'alice');
    assert.equal(refused?.abuse, true);
    // a session that authenticated before the flag stops at its next MAIL FROM
    const r = await openSession.command('MAIL FROM:<alice@example.com>');
    assert.equal(r.code, 550);
    assert.equal(r.text, '5.7.13 Account alice is disabled');

    const lift = await fetch(`${url}/abuse/alice`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.deepEqual(await lift.json(), { user: 'alice', lifted: true });
    assert.deepEqual(await session(t.port('plain'), 'alice', mail('alice@example.com')), [250]);
    assert.equal(t.logs.events('abuse_lifted')[0]?.user, 'alice');
    const again = await fetch(`${url}/abuse/alice`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(again.status, 404);
  });
});

describe('abuse detection with two relays on one Redis', () => {
  let redis: RedisServerHandle;
  before(async () => {
    redis = await startRedisServer();
  });
  after(() => redis.stop());

  it('raises one flag for the cluster, and every relay refuses the suspended user', async () => {
    let now = Date.parse('2025-07-01T10:30:00Z');
    const config = {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      state: { backend: 'redis', namespace: 'abuse', redis: { nodes: redis.nodes } },
      usage: { flushIntervalSeconds: 60 },
      abuse: ABUSE,
    };
    const users = [await testUser('carol')];
    const a = await startTestRelay({ config, users, now: () => now });
    const b = await startTestRelay({ config, users, now: () => now });
    try {
      assert.deepEqual(await session(a.port('plain'), 'carol', [], { from: '127.0.0.1' }), []);
      assert.deepEqual(await session(b.port('plain'), 'carol', [], { from: '127.0.0.2' }), []);
      assert.deepEqual(await session(b.port('plain'), 'carol', [], { from: '127.0.0.3' }), []);
      await Promise.all([a.relay.usage?.flush(), b.relay.usage?.flush()]);
      // neither relay saw more than two addresses; the shared usage has three
      assert.deepEqual(
        (await a.relay.abuse?.tick())?.map((f) => [f.user, f.kind, f.numbers.distinctClientIps]),
        [['carol', 'many_client_ips', 3]],
      );
      now += 60_000;
      assert.deepEqual(await b.relay.abuse?.tick(), [], 'b does not evaluate while a holds the lease');
      const flags = [
        (await metric(a, 'sluice_abuse_flags_total')).many_client_ips,
        (await metric(b, 'sluice_abuse_flags_total')).many_client_ips,
      ];
      assert.deepEqual(flags, [1, 0], 'one flag in the cluster');
      assert.equal(b.relay.abuse?.isSuspended('carol'), true);
      assert.deepEqual(await session(b.port('plain'), 'carol', []), [535]);
      assert.equal(b.logs.events('abuse_suspected').length, 0);
      assert.equal(a.logs.events('abuse_suspected').length, 1);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
