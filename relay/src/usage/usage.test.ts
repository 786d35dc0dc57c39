// Usage per user on recorded traffic: a real relay in-process, real SMTP sessions from
// two loopback addresses, an injected clock for the hourly buckets; then what the admin
// API and the `usage` CLI show for it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { UsageResponse } from '../admin/usage-api.ts';
import { runUsageCli } from '../cli/usage.ts';
import {
  EXE_ATTACHMENT,
  PLAIN_LISTENER,
  session,
  startTestRelay,
  type TestRelay,
  testUser,
} from '../testing/index.ts';

const TOKEN = 'usage-test-token';

async function cli(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (c: Buffer) => out.push(c.toString()));
  stderr.on('data', (c: Buffer) => err.push(c.toString()));
  const code = await runUsageCli(args, { stdout, stderr, url, token: TOKEN });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('usage per user on recorded traffic', () => {
  let t: TestRelay;
  let dir: string;
  let url: string;
  let now = Date.parse('2025-07-01T10:45:00Z');
  const get = async (path: string, token = TOKEN) => {
    const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as UsageResponse & { error?: string } };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-usage-'));
    await writeFile(join(dir, 'token'), `${TOKEN}\n`);
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        // the test flushes by itself; the timer must not add flushes of its own
        usage: { flushIntervalSeconds: 60 },
      },
      users: [await testUser('alice'), await testUser('bob', { allowedSenders: ['@bob.example'] })],
      now: () => now,
      fsync: false, // durability is not under test here, and 70 fsyncs are slow
    });
    url = `http://127.0.0.1:${t.relay.adminPort}`;
    const port = t.port('plain');

    // 10:45 — alice: two messages (2 and 1 recipients) and one refused at end of DATA,
    // then a second login from another address; bob: a sender he may not use.
    assert.deepEqual(
      await session(port, 'alice', [
        { from: 'alice@example.com', to: ['x@example.net', 'y@example.net'] },
        { from: 'alice@example.com', to: ['z@example.net'] },
        { from: 'alice@example.com', to: ['x@example.net'], body: EXE_ATTACHMENT },
      ]),
      [250, 250, 550],
    );
    assert.deepEqual(await session(port, 'alice', [], { from: '127.0.0.2' }), []);
    assert.deepEqual(
      await session(port, 'bob', [{ from: 'bob@evil.example', to: ['x@example.net'] }]),
      [553],
    );
    // 11:05 — alice once more, in the next hour of the same day
    now += 20 * 60_000;
    await t.relay.usage?.flush();
    assert.deepEqual(
      await session(port, 'alice', [{ from: 'alice@example.com', to: ['w@example.net'] }]),
      [250],
    );
    await t.relay.usage?.flush();
  });
  after(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Bytes of alice's accepted messages as spooled, oldest first. */
  async function aliceBytes(): Promise<number[]> {
    return (await t.queued())
      .filter((q) => q.envelope.user === 'alice')
      .sort((a, b) => (a.envelope.receivedAt < b.envelope.receivedAt ? -1 : 1))
      .map((q) => q.envelope.size);
  }

  it('serves hourly usage on GET /usage behind the bearer token', async () => {
    assert.equal((await get('/usage', 'wrong')).status, 401);
    const { status, body } = await get('/usage?period=hour');
    assert.equal(status, 200);
    assert.equal(body.period, 'hour');
    assert.equal(body.to, '2025-07-01T11:05:00.000Z');
    const sizes = await aliceBytes();
    assert.equal(sizes.length, 3);
    assert.deepEqual(body.rows, [
      {
        user: 'alice',
        period: 'hour',
        start: '2025-07-01T10:00:00.000Z',
        messages: 2,
        recipients: 3,
        bytes: (sizes[0] ?? 0) + (sizes[1] ?? 0),
        rejected: 1,
        rejections: { blocked_attachment: 1 },
        authentications: 2,
        distinctClientIps: 2,
      },
      {
        user: 'bob',
        period: 'hour',
        start: '2025-07-01T10:00:00.000Z',
        messages: 0,
        recipients: 0,
        bytes: 0,
        rejected: 1,
        rejections: { sender_not_allowed: 1 },
        authentications: 1,
        distinctClientIps: 1,
      },
      {
        user: 'alice',
        period: 'hour',
        start: '2025-07-01T11:00:00.000Z',
        messages: 1,
        recipients: 1,
        bytes: sizes[2] ?? 0,
        rejected: 0,
        rejections: {},
        authentications: 1,
        distinctClientIps: 1,
      },
    ]);
  });

  it('adds the hours up per day, and filters by user and range', async () => {
    const day = await get('/usage?period=day&user=alice');
    const sizes = await aliceBytes();
    assert.deepEqual(
      day.body.rows.map((r) => [
        r.start,
        r.messages,
        r.recipients,
        r.bytes,
        r.authentications,
        r.distinctClientIps,
      ]),
      [['2025-07-01T00:00:00.000Z', 3, 4, sizes.reduce((a, b) => a + b, 0), 3, 2]],
    );
    const one = await get('/usage?period=hour&from=2025-07-01T11&to=2025-07-01T11');
    assert.deepEqual(
      one.body.rows.map((r) => [r.user, r.start]),
      [['alice', '2025-07-01T11:00:00.000Z']],
    );
    assert.equal((await get('/usage?period=week')).status, 400);
    assert.match((await get('/usage?from=yesterday')).body.error ?? '', /^from: "yesterday" is not a time$/);
    assert.match((await get('/usage?period=hour&from=2025-01-01')).body.error ?? '', /at most 744 per query/);
  });

  it('prints the report as a table and as CSV (sluice-relay usage)', async () => {
    const table = await cli(['--period', 'hour'], url);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(
      lines[0] ?? '',
      /^PERIOD START\s+USER\s+MESSAGES\s+RECIPIENTS\s+BYTES\s+REJECTED\s+AUTHS\s+IPS\s+REFUSALS$/,
    );
    assert.match(
      lines[1] ?? '',
      /^2025-07-01 10:00\s+alice\s+2\s+3\s+\d+\s+1\s+2\s+2\s+blocked_attachment=1$/,
    );
    assert.match(lines[2] ?? '', /^2025-07-01 10:00\s+bob\s+0\s+0\s+0\s+1\s+1\s+1\s+sender_not_allowed=1$/);
    assert.match(lines[3] ?? '', /^2025-07-01 11:00\s+alice\s+1\s+1\s+\d+\s+0\s+1\s+1\s+-$/);
    assert.match(lines[4] ?? '', /^-- 3 rows, 2 users: 3 messages, 4 recipients, \d+ bytes, 2 rejected$/);

    const csv = await cli(['--period', 'day', '--csv'], url);
    assert.equal(csv.code, 0, csv.stderr);
    const sizes = await aliceBytes();
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.equal(
      csv.stdout,
      [
        'period,start,user,messages,recipients,bytes,rejected,authentications,distinct_client_ips,rejected_blocked_attachment,rejected_sender_not_allowed',
        `day,2025-07-01T00:00:00.000Z,alice,3,4,${total},1,3,2,1,0`,
        'day,2025-07-01T00:00:00.000Z,bob,0,0,0,1,1,1,0,1',
        '',
      ].join('\r\n'),
    );

    const bob = await cli(['--user', 'bob', '--json'], url);
    assert.deepEqual(
      (JSON.parse(bob.stdout) as UsageResponse).rows.map((r) => r.user),
      ['bob'],
    );
  });

  it('costs one state-store round trip per flush, not per message', async () => {
    const ops = await t.relay.metrics.registry.getSingleMetric('sluice_state_operations_total')?.get();
    const flushes = ops?.values.find((v) => v.labels.op === 'usage_flush')?.value ?? 0;
    // two explicit flushes carried 4 accepted messages, 2 refusals and 4 logins
    assert.equal(flushes, 2);
  });
});
