// The operator's reading of the relay admin API, against a real relay: the test (never
// the operator) starts one in-process with the relay's test harness, so the JSON contract
// between the two is checked on the real thing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PLAIN_LISTENER, session, startTestRelay, type TestRelay, testUser } from '@sluice/relay/testing';
import { RelayAdminUsageSource, type UsageTarget } from './relay-usage.ts';

describe('usage and abuse from a relay admin API', () => {
  let t: TestRelay;
  let dir: string;
  let target: UsageTarget;
  const now = Date.parse('2025-07-01T10:30:00Z');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-op-usage-'));
    await writeFile(join(dir, 'token'), 'op-token');
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        usage: { flushIntervalSeconds: 60 },
        abuse: { maxClientIps: 2, autoSuspend: true, intervalSeconds: 3600 },
      },
      users: [await testUser('alice'), await testUser('carol')],
      now: () => now,
      fsync: false,
    });
    const port = t.port('plain');
    const mail = { from: 'alice@example.com', to: ['x@example.net', 'y@example.net'] };
    assert.deepEqual(await session(port, 'alice', [mail, mail]), [250, 250]);
    for (const from of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) await session(port, 'carol', [], { from });
    await t.relay.usage?.flush();
    await t.relay.abuse?.tick();
    target = {
      namespace: 'prod',
      policy: 'mail',
      url: `http://127.0.0.1:${t.relay.adminPort}/`,
      token: 'op-token',
    };
  });
  after(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("reads today's usage per user and the live flags and suspensions", async () => {
    const usage = await new RelayAdminUsageSource({ now: () => now }).fetch(target);
    assert.equal(usage.date, '2025-07-01');
    assert.deepEqual(usage.today.get('alice'), {
      messages: 2,
      recipients: 4,
      bytes: usage.today.get('alice')?.bytes,
      rejected: 0,
      authentications: 1,
      distinctClientIps: 1,
      rejections: {},
    });
    assert.ok((usage.today.get('alice')?.bytes ?? 0) > 0);
    assert.equal(usage.today.get('carol')?.distinctClientIps, 3);
    assert.deepEqual(
      usage.flags.map((f) => [f.user, f.kind, f.reason]),
      [['carol', 'many_client_ips', 'ManyClientIps']],
    );
    assert.deepEqual(
      usage.suspended.map((s) => [s.user, s.reason, s.until]),
      [['carol', 'ManyClientIps', '2025-07-02T10:30:00.000Z']],
    );
    assert.equal(usage.autoSuspend, true);
  });

  it('fails with the reason when the token is wrong or nothing answers', async () => {
    const source = new RelayAdminUsageSource({ now: () => now, timeoutMs: 2000 });
    await assert.rejects(source.fetch({ ...target, token: 'wrong' }), {
      name: 'UsageFetchError',
      message: /answered HTTP 401$/,
    });
    await assert.rejects(source.fetch({ ...target, url: 'http://127.0.0.1:1' }), {
      name: 'UsageFetchError',
      message: /^cannot reach http:\/\/127\.0\.0\.1:1\/usage/,
    });
  });
});
