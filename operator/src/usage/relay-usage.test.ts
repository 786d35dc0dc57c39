// The operator's reading of the relay admin API, against a real relay: the test (never
// the operator) starts one in-process with the relay's test harness, so the JSON contract
// between the two is checked on the real thing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PLAIN_LISTENER,
  type SmtpSink,
  session,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
  testUser,
  waitFor,
} from '@sluice/relay/testing';
import { smtpUser } from '../api/defaults.ts';
import { smtpUserStatus } from '../reconcile/smtp-user.ts';
import { userUsage } from '../reconcile/user-usage.ts';
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

describe('deliveries by reply class from a relay admin API into SmtpUser status', () => {
  let t: TestRelay;
  let sink: SmtpSink;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-op-deliveries-'));
    await writeFile(join(dir, 'token'), 'op-token');
    sink = await startSmtpSink();
    // the next hop plays a mailbox provider: one unknown mailbox, one full one, one throttle
    sink.setRecipientReply('gone@example.net', { code: 550, text: '5.1.1 The email account does not exist' });
    sink.setRecipientReply('full@example.net', { code: 452, text: '4.2.2 The email account is over quota' });
    sink.setRecipientReply('busy@example.net', {
      code: 451,
      text: '4.7.28 Gmail has detected an unusual rate of unsolicited mail',
    });
    t = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        usage: { flushIntervalSeconds: 60 },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
      },
      users: [await testUser('alice')],
      fsync: false,
    });
    const to = [
      'ok@example.net',
      'ok2@example.net',
      'gone@example.net',
      'full@example.net',
      'busy@example.net',
    ];
    assert.deepEqual(await session(t.port('plain'), 'alice', [{ from: 'alice@example.com', to }]), [250]);
    await waitFor(
      'two delivered, one bounced, two deferred',
      () =>
        t.logs.events('delivered').filter((l) => String(l.recipient).startsWith('ok')).length === 2 &&
        t.logs.events('bounced').some((l) => l.recipient === 'gone@example.net') &&
        t.logs.events('deferred').length === 2,
    );
    await t.relay.usage?.flush();
  });
  after(async () => {
    await t?.close();
    await sink?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('shows delivered, deferred and bounced, each by the class of the reply, in status.usage', async () => {
    const usage = await new RelayAdminUsageSource().fetch({
      namespace: 'prod',
      policy: 'mail',
      url: `http://127.0.0.1:${t.relay.adminPort}`,
      token: 'op-token',
    });
    assert.deepEqual(userUsage('alice', usage).deliveries, {
      delivered: 2,
      deferred: 2,
      bounced: 1,
      classes: [
        { result: 'delivered', class: 'accepted', count: 2 },
        { result: 'deferred', class: 'mailbox-full', count: 1 },
        { result: 'deferred', class: 'rate-limited', count: 1 },
        { result: 'bounced', class: 'invalid-recipient', count: 1 },
      ],
    });
    // what the status patch of the SmtpUser holds: the same numbers, beside today's messages
    const user = smtpUser(
      { name: 'alice', namespace: 'prod', generation: 1 },
      { username: 'alice', policyRef: { name: 'mail' }, passwordSecretRef: { name: 'alice-pw' } },
    );
    const status = smtpUserStatus(
      user,
      { ok: true, reason: 'Active', message: 'The user can relay mail' },
      undefined,
      '2025-07-01T10:00:00Z',
      usage,
    );
    assert.equal(status.usage?.messages, 1);
    assert.equal(status.usage?.deliveries.bounced, 1);
  });
});
