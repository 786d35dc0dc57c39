// Trace export the way it runs in a pod: the relay process started from a config file with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at a real OTLP/HTTP receiver on loopback (a small
// HTTP server that takes POST /v1/traces; the exporter sends OTLP JSON). The batch
// processor waits 5 s before it exports, so spans that arrive right after SIGTERM show
// that shutdown flushes them.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PASSWORD,
  RawSmtpClient,
  type SmtpSink,
  startSmtpSink,
  testPasswordHash,
  waitFor,
} from '../testing/index.ts';

const MAIN = new URL('../main.ts', import.meta.url).pathname;

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: OtlpAttribute[];
}
interface OtlpRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: Array<{ scope?: { name?: string }; spans?: OtlpSpan[] }>;
  }>;
}

/** An OTLP/HTTP traces receiver: keeps each request it was sent, decoded from JSON. */
class OtlpReceiver {
  readonly requests: OtlpRequest[] = [];
  readonly contentTypes: string[] = [];
  readonly #server: Server;
  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        this.contentTypes.push(req.headers['content-type'] ?? '');
        this.requests.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpRequest);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
  }
  async listen(): Promise<number> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return (this.#server.address() as AddressInfo).port;
  }
  spans(): Array<OtlpSpan & { service: string; scope: string }> {
    return this.requests.flatMap((r) =>
      (r.resourceSpans ?? []).flatMap((rs) => {
        const service =
          rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        return (rs.scopeSpans ?? []).flatMap((ss) =>
          (ss.spans ?? []).map((s) => ({ ...s, service, scope: ss.scope?.name ?? '' })),
        );
      }),
    );
  }
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

function attribute(span: OtlpSpan, key: string): OtlpValue['stringValue'] {
  return span.attributes?.find((a) => a.key === key)?.value.stringValue;
}

describe('OTLP export from the relay process', () => {
  let dir: string;
  let receiver: OtlpReceiver;
  let sink: SmtpSink;
  let child: ChildProcess;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    receiver = new OtlpReceiver();
    const otlpPort = await receiver.listen();
    sink = await startSmtpSink();
    dir = await mkdtemp(join(tmpdir(), 'sluice-otlp-'));
    await writeFile(
      join(dir, 'config.yaml'),
      [
        'hostname: relay.test',
        'listeners:',
        '  - { name: plain, address: 127.0.0.1, port: 0, tls: none }',
        'auth: { allowPlaintext: true }',
        `delivery: { mode: smarthost, smarthost: { host: 127.0.0.1, port: ${sink.port}, tls: none } }`,
        `spoolDir: ${join(dir, 'spool')}`,
        'stateDir: state',
        'usersFile: users.yaml',
        'admin: { address: 127.0.0.1, port: 0 }',
        '',
      ].join('\n'),
    );
    await writeFile(
      join(dir, 'users.yaml'),
      `users:\n  - username: alice\n    passwordHash: '${await testPasswordHash()}'\n`,
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpPort}`,
    };
    delete env.OTEL_SERVICE_NAME;
    child = spawn(process.execPath, [MAIN, '--config', join(dir, 'config.yaml')], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffer = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as Record<string, unknown>);
    });
    await waitFor('relay started', () => lines.some((l) => l.event === 'started'), { timeoutMs: 60_000 });
  });
  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await receiver.close();
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the span tree of a message to the collector, flushed on SIGTERM', async () => {
    const ports = lines.find((l) => l.event === 'started')?.ports as Record<string, number>;
    const client = await RawSmtpClient.connect(ports.plain ?? 0);
    await client.greeting();
    await client.ehlo();
    assert.equal((await client.authPlain('alice', PASSWORD)).code, 235);
    const done = (
      await client.sendRaw('alice@sender.test', ['bob@one.test'], 'Subject: otlp\r\n\r\nhi\r\n')
    ).at(-1);
    assert.equal(done?.code, 250);
    const queueId = /queued as (\S+)/.exec(done?.text ?? '')?.[1] ?? '';
    await client.quit();
    await sink.waitForMessages(1);
    await waitFor('delivery finished', () => lines.some((l) => l.event === 'message_done'));

    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);

    assert.ok(receiver.requests.length > 0, 'the collector received an export');
    assert.ok(receiver.contentTypes.every((t) => t.startsWith('application/json')));
    const spans = receiver.spans();
    assert.ok(spans.every((s) => s.service === 'sluice-relay' && s.scope === 'sluice-relay'));
    const names = new Set(spans.map((s) => s.name));
    for (const name of [
      'smtp.session',
      'smtp.transaction',
      'smtp.auth',
      'ratelimit.check',
      'mime.inspect',
      'spool.write',
      'delivery.attempt',
    ]) {
      assert.ok(names.has(name), `${name} exported (got ${[...names].join(', ')})`);
    }
    const session = spans.find((s) => s.name === 'smtp.session');
    const tx = spans.find((s) => s.name === 'smtp.transaction');
    assert.equal(tx?.parentSpanId, session?.spanId);
    assert.equal(tx?.traceId, session?.traceId);
    assert.equal(attribute(tx as OtlpSpan, 'sluice.queue_id'), queueId);
    const attempt = spans.find((s) => s.name === 'delivery.attempt') as OtlpSpan;
    assert.equal(attribute(attempt, 'sluice.queue_id'), queueId);
    assert.equal(attribute(attempt, 'sluice.result'), 'delivered');
  });
});
