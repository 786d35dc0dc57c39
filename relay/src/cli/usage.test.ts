// The `usage` command line and its HTTP exchange, against a real admin HTTP server whose
// usage source is a fixed list of rows (the relay-driven test in usage/ covers the rest).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { registerUsageApi } from '../admin/usage-api.ts';
import type { UsageQuery, UsageReportRow } from '../usage/report.ts';
import { runUsageCli, USAGE_CLI_USAGE } from './usage.ts';

const TOKEN = 'usage-cli-token';

const row = (user: string, extra: Partial<UsageReportRow> = {}): UsageReportRow => ({
  user,
  period: 'day',
  start: '2025-07-01T00:00:00.000Z',
  messages: 1,
  recipients: 2,
  bytes: 300,
  rejected: 0,
  rejections: {},
  authentications: 1,
  distinctClientIps: 1,
  ...extra,
});

describe('sluice-relay usage', () => {
  let server: FastifyInstance;
  let url: string;
  const queries: UsageQuery[] = [];
  let rows: UsageReportRow[] = [];

  before(async () => {
    server = Fastify({ logger: false });
    registerUsageApi(server, {
      token: TOKEN,
      now: () => Date.parse('2025-07-03T12:00:00Z'),
      usage: {
        report: async (q) => {
          queries.push(q);
          return rows;
        },
      },
    });
    await server.listen({ host: '127.0.0.1', port: 0 });
    const address = server.server.address();
    assert.ok(typeof address === 'object' && address !== null);
    url = `http://127.0.0.1:${address.port}`;
  });
  after(() => server.close());

  async function run(args: string[], token = TOKEN) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const code = await runUsageCli(args, { stdout, stderr, url, token });
    return { code, stdout: out, stderr: err };
  }

  it('passes user, period and range to the API', async () => {
    rows = [];
    const r = await run(['--user', 'alice', '--period', 'day', '--from', '2025-07-01', '--to', '2025-07-02']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(queries.at(-1), {
      period: 'day',
      from: Date.parse('2025-07-01T00:00:00Z'),
      to: Date.parse('2025-07-02T00:00:00Z'),
      user: 'alice',
    });
    assert.equal(
      r.stdout,
      'No usage in the days from 2025-07-01T00:00:00.000Z to 2025-07-02T00:00:00.000Z.\n',
    );
  });

  it('quotes CSV cells and defuses formulas in user names', async () => {
    rows = [row('=cmd|calc'), row('a,b', { rejections: { rate_limited: 2 }, rejected: 2 })];
    const r = await run(['--csv', '--period', 'day']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\r\n'), [
      'period,start,user,messages,recipients,bytes,rejected,authentications,distinct_client_ips,rejected_rate_limited',
      "day,2025-07-01T00:00:00.000Z,'=cmd|calc,1,2,300,0,1,1,0",
      'day,2025-07-01T00:00:00.000Z,"a,b",1,2,300,2,1,1,2',
      '',
    ]);
  });

  it('adds delivery results and their reply classes as columns when there are any', async () => {
    const deliveries = {
      delivered: { total: 3, classes: { accepted: 3 } },
      deferred: { total: 1, classes: { 'rate-limited': 1 } },
      bounced: { total: 2, classes: { 'invalid-recipient': 2 } },
    };
    rows = [row('alice', { deliveries }), row('bob')];
    const r = await run(['--csv', '--period', 'day']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\r\n'), [
      'period,start,user,messages,recipients,bytes,rejected,authentications,distinct_client_ips,delivered,deferred,bounced,bounced_invalid-recipient,deferred_rate-limited,delivered_accepted',
      'day,2025-07-01T00:00:00.000Z,alice,1,2,300,0,1,1,3,1,2,2,1,3',
      'day,2025-07-01T00:00:00.000Z,bob,1,2,300,0,1,1,0,0,0,0,0,0',
      '',
    ]);
  });

  it('refuses bad arguments with the usage text, and reports API errors', async () => {
    const bad = await run(['--period', 'week']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, `usage: --period must be hour or day, not "week"\n\n${USAGE_CLI_USAGE}`);
    assert.equal((await run(['--csv', '--json'])).code, 2);
    assert.equal((await run(['extra'])).code, 2);
    const denied = await run([], 'wrong');
    assert.deepEqual(
      [denied.code, denied.stderr],
      [1, 'usage: the admin API refused the token (401 unauthorized)\n'],
    );
    const range = await run(['--from', 'never']);
    assert.deepEqual([range.code, range.stderr], [1, 'usage: from: "never" is not a time (HTTP 400)\n']);
    assert.equal((await run(['--help'])).stdout, USAGE_CLI_USAGE);
  });
});
