// Traces of real SMTP traffic through a relay in this process, with the SDK registered by
// startTracing and an in-memory exporter: the span tree of one message, what a refusal
// looks like, the delivery attempt, and that no attribute carries a secret or content.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { type Attributes, SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTracing, type Tracing } from '@sluice/telemetry/tracing';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../testing/index.ts';

const BODY_MARKER = 'body-text-7f3a9c';
const SUBJECT_MARKER = 'subject-header-51d2e0';
const SENDER = 'alice@sender.test';
const RECIPIENTS = ['bob@one.test', 'carol@one.test'];

function message(extra = ''): string {
  return [
    `From: <${SENDER}>`,
    `To: <${RECIPIENTS[0]}>`,
    `Subject: ${SUBJECT_MARKER}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain',
    '',
    `The ${BODY_MARKER} that must never reach a span.`,
    extra,
  ].join('\r\n');
}

const blocked = [
  `From: <${SENDER}>`,
  `Subject: ${SUBJECT_MARKER}`,
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b"',
  '',
  '--b',
  'Content-Type: text/plain',
  '',
  BODY_MARKER,
  '--b',
  'Content-Type: application/octet-stream; name="setup.exe"',
  'Content-Disposition: attachment; filename="setup.exe"',
  'Content-Transfer-Encoding: base64',
  '',
  'TVqQAAMAAAAEAAAA',
  '--b--',
  '',
].join('\r\n');

describe('traces of SMTP traffic (in-memory exporter)', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let dns: TestDnsServer;
  let relay: TestRelay;

  before(async () => {
    tracing = await startTracing({ serviceName: 'sluice-relay-test', exporter });
    assert.equal(tracing.enabled, true);
    dns = await startDnsServer(); // unknown names answer NXDOMAIN: every client is clear
    relay = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        dnsbl: { enabled: true, resolvers: [dns.address], zones: [{ zone: 'bl.test' }] },
      },
    });
  });
  after(async () => {
    await relay.close();
    await dns.close();
    await tracing.shutdown();
  });

  /** Flushes until a span matching the predicate has been exported. */
  async function exported(what: string, match: (s: ReadableSpan) => boolean): Promise<ReadableSpan[]> {
    await waitFor(what, async () => {
      await tracing.flush();
      return exporter.getFinishedSpans().some(match);
    });
    return exporter.getFinishedSpans();
  }

  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
  const idOf = (s: ReadableSpan) => s.spanContext().spanId;

  function assertNoSecrets(spans: readonly ReadableSpan[], secrets: readonly string[]): void {
    const text = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.status, s.events]));
    for (const secret of secrets) assert.ok(!text.includes(secret), `"${secret}" appears in a span`);
  }

  it('shows one message as session → transaction → checks, inspection and spool', async () => {
    const client = await RawSmtpClient.connect(relay.port('plain'));
    assert.equal((await client.greeting()).code, 220);
    await client.ehlo();
    assert.equal((await client.authPlain('alice', PASSWORD)).code, 235);
    const replies = await client.sendRaw(SENDER, RECIPIENTS, message());
    const done = replies.at(-1);
    assert.equal(done?.code, 250);
    const queueId = /queued as (\S+)/.exec(done?.text ?? '')?.[1] ?? '';
    assert.ok(queueId);
    await client.quit();

    const spans = await exported('the session span', (s) => s.name === 'smtp.session');
    const session = spans.find((s) => s.name === 'smtp.session');
    assert.ok(session);
    assert.equal(parentOf(session), undefined, 'the session is the root of its trace');
    assert.equal(session.kind, SpanKind.SERVER, 'a session a client opened is a SERVER span');
    // the session's log lines name its trace and span
    const accepted = relay.logs.events('accepted').find((l) => l.queueId === queueId);
    assert.equal(accepted?.trace_id, session.spanContext().traceId);
    assert.equal(accepted?.span_id, session.spanContext().spanId);
    assert.match(String(accepted?.messageId), new RegExp(`^<${queueId}@`), 'the Message-ID the relay added');
    const trace = spans.filter((s) => s.spanContext().traceId === session.spanContext().traceId);
    const tx = trace.find((s) => s.name === 'smtp.transaction');
    assert.ok(tx);
    assert.equal(parentOf(tx), idOf(session));
    assert.equal(tx.attributes['sluice.queue_id'], queueId);
    assert.equal(tx.attributes['sluice.result'], 'accepted');
    assert.equal(tx.attributes['sluice.recipients'], 2);

    const children = (parent: ReadableSpan) =>
      trace
        .filter((s) => parentOf(s) === idOf(parent))
        .map((s) => `${s.name}${s.attributes['sluice.stage'] ? `:${s.attributes['sluice.stage']}` : ''}`)
        .sort();
    assert.deepEqual(children(session), [
      'dnsbl.check:connect',
      'ratelimit.check:connect',
      'smtp.auth',
      'smtp.transaction',
    ]);
    assert.deepEqual(children(tx), [
      'mime.inspect',
      'ratelimit.check:data',
      'ratelimit.check:mail',
      'spool.write',
    ]);

    const named = (name: string) => trace.find((s) => s.name === name) as ReadableSpan;
    assert.deepEqual(pick(named('smtp.auth').attributes, ['sluice.result', 'sluice.user']), {
      'sluice.result': 'success',
      'sluice.user': 'alice',
    });
    assert.equal(named('dnsbl.check').attributes['sluice.result'], 'clear');
    assert.deepEqual(pick(named('mime.inspect').attributes, ['sluice.result', 'sluice.queue_id']), {
      'sluice.result': 'clean',
      'sluice.queue_id': queueId,
    });
    const spool = named('spool.write');
    assert.equal(spool.attributes['sluice.result'], 'committed');
    assert.equal(spool.attributes['sluice.queue_id'], queueId);
    const [queued] = await relay.queued();
    assert.equal(spool.attributes['sluice.size_bytes'], queued?.envelope.size);
    for (const s of trace.filter((s) => s.name === 'ratelimit.check'))
      assert.equal(s.attributes['sluice.result'], 'ok');
    assert.deepEqual(
      pick(session.attributes, ['sluice.listener', 'sluice.messages', 'sluice.result', 'sluice.user']),
      { 'sluice.listener': 'plain', 'sluice.messages': 1, 'sluice.result': 'closed', 'sluice.user': 'alice' },
    );
    assert.ok(trace.every((s) => s.ended));
    assertNoSecrets(trace, [PASSWORD, BODY_MARKER, SUBJECT_MARKER, SENDER, ...RECIPIENTS]);
  });

  it('records refusals as results: a failed AUTH without its username, a blocked attachment', async () => {
    exporter.reset();
    const client = await RawSmtpClient.connect(relay.port('plain'));
    await client.greeting();
    await client.ehlo();
    // people type their password into the username field; a failed username stays out of traces
    const typo = 'hunter2-typed-as-username';
    assert.equal((await client.authPlain(typo, PASSWORD)).code, 535);
    assert.equal((await client.authPlain('alice', PASSWORD)).code, 235);
    const replies = await client.sendRaw(SENDER, RECIPIENTS, blocked);
    assert.equal(replies.at(-1)?.code, 550);
    await client.quit();

    const spans = await exported('the session span', (s) => s.name === 'smtp.session');
    const auths = spans.filter((s) => s.name === 'smtp.auth').map((s) => s.attributes['sluice.result']);
    assert.deepEqual(auths.sort(), ['failure', 'success']);
    const tx = spans.find((s) => s.name === 'smtp.transaction');
    assert.deepEqual(pick(tx?.attributes ?? {}, ['sluice.result', 'sluice.reason']), {
      'sluice.result': 'rejected',
      'sluice.reason': 'blocked_attachment',
    });
    const inspect = spans.find((s) => s.name === 'mime.inspect');
    assert.deepEqual(pick(inspect?.attributes ?? {}, ['sluice.result', 'sluice.mime.extension']), {
      'sluice.result': 'blocked',
      'sluice.mime.extension': 'exe',
    });
    assert.equal(spans.find((s) => s.name === 'spool.write')?.attributes['sluice.result'], 'removed');
    assertNoSecrets(spans, [PASSWORD, typo, BODY_MARKER, SUBJECT_MARKER, 'setup.exe', SENDER]);
  });

  it('traces each delivery attempt with its queue id, destination and results', async () => {
    const sink = await startSmtpSink();
    const delivering = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
      },
    });
    try {
      const client = await RawSmtpClient.connect(delivering.port('plain'));
      await client.greeting();
      await client.ehlo();
      await client.authPlain('alice', PASSWORD);
      const done = (await client.sendRaw(SENDER, RECIPIENTS, message())).at(-1);
      const queueId = /queued as (\S+)/.exec(done?.text ?? '')?.[1] ?? '';
      await client.quit();
      await sink.waitForMessages(1);

      const spans = await exported('the delivery span', (s) => s.name === 'delivery.attempt');
      const attempt = spans.find((s) => s.name === 'delivery.attempt');
      assert.ok(attempt);
      assert.equal(parentOf(attempt), undefined, 'an attempt is a trace of its own, found by queue id');
      assert.equal(attempt.kind, SpanKind.CLIENT, 'a connection the relay makes is a CLIENT span');
      assert.deepEqual(attempt.attributes, {
        'sluice.queue_id': queueId,
        'sluice.delivery.domain': '127.0.0.1',
        'sluice.recipients': 2,
        'sluice.delivery.attempt': 1,
        'sluice.delivery.delivered': 2,
        'sluice.delivery.deferred': 0,
        'sluice.delivery.bounced': 0,
        'server.address': '127.0.0.1',
        'network.peer.address': '127.0.0.1',
        'network.local.address': '127.0.0.1',
        'sluice.result': 'delivered',
      });
      assertNoSecrets(spans, [PASSWORD, BODY_MARKER, SUBJECT_MARKER, ...RECIPIENTS]);
    } finally {
      await delivering.close();
      await sink.close();
    }
  });
});

describe('startTracing', () => {
  it('loads no SDK module when it is off, while the relay handles a message', async () => {
    // a fresh process whose module loader records every module it loads
    const script = `
      import { registerHooks } from 'node:module';
      const loaded = [];
      registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
      const { startTracing } = await import(${JSON.stringify(import.meta.resolve('@sluice/telemetry/tracing'))});
      const t = await import(${JSON.stringify(new URL('../testing/index.ts', import.meta.url).href)});
      const tracing = await startTracing({ serviceName: 'sluice-relay' });
      const relay = await t.startTestRelay({ config: { listeners: [t.PLAIN_LISTENER], auth: { allowPlaintext: true } } });
      const client = await t.RawSmtpClient.connect(relay.port('plain'));
      await client.greeting();
      await client.ehlo();
      await client.authPlain('alice', t.PASSWORD);
      const replies = await client.sendRaw('a@sender.test', ['b@one.test'], 'Subject: x\\r\\n\\r\\nhi\\r\\n');
      await client.quit();
      await relay.close();
      await tracing.shutdown();
      process.stdout.write(JSON.stringify({
        reply: replies.at(-1).code,
        otel: [...new Set(loaded.flatMap((u) => /@opentelemetry\\/([^/]+)/.exec(u)?.[1] ?? []))],
      }));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(out), { reply: 250, otel: ['api'] });
  });
});

function pick(attributes: Attributes, keys: readonly string[]): Attributes {
  return Object.fromEntries(keys.filter((k) => k in attributes).map((k) => [k, attributes[k]]));
}
