import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

// Standard output is written in batches; these run a real process and read its output.
const LOGGER = new URL('./logger.ts', import.meta.url).href;

function run(
  script: string,
  onLine?: (line: string, child: ReturnType<typeof spawn>) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of out.split('\n').filter(Boolean)) onLine?.(line, child);
    });
    child.on('error', reject);
    child.on('exit', () => resolve(out));
  });
}

/** The event field of each line written. */
function eventsOf(out: string): string[] {
  return out
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event: string }).event);
}

describe('log output', () => {
  it('writes a field a logger is bound to once, and format characters as escapes', async () => {
    const out = await run(
      `import { createLogger } from '${LOGGER}';
       const log = createLogger().child({ sessionId: 's1', user: 'alice' });
       log.info({ event: 'connection', user: 'alice', service: 'x', name: 'in\u202Evoice\u2066' }, 'closed');`,
    );
    const line = out.trim();
    assert.equal(line.match(/"user":/g)?.length, 1);
    assert.equal(line.match(/"service":/g)?.length, 1);
    assert.ok(!/[\u202e\u2066]/.test(line));
    assert.equal((JSON.parse(line) as { name: string }).name, 'in\\u202Evoice\\u2066');
  });

  it('never writes a password or a password hash, at the top level or one object down', async () => {
    const out = await run(
      `import { createLogger } from '${LOGGER}';
       const log = createLogger();
       log.info({ event: 'x', password: 'pw-top', passwordHash: '$scrypt$top', auth: { username: 'alice', password: 'pw-nested' }, user: { passwordHash: '$scrypt$nested' } }, 'secrets');`,
    );
    const line = JSON.parse(out.trim()) as Record<string, unknown>;
    assert.doesNotMatch(out, /pw-top|pw-nested|\$scrypt\$/);
    assert.equal(line.password, '<redacted>');
    assert.deepEqual(line.auth, { username: 'alice', password: '<redacted>' });
  });

  it("never writes a secret a child logger is bound to, escapes its bound text, and an error's password keeps its message", async () => {
    const out = await run(
      `import { createLogger } from '${LOGGER}';
       const log = createLogger().child({ sessionId: 's1', helo: 'in\u202Evoice', password: 'pw-bound', smarthost: { host: 'h', password: 'pw-bound-nested' } });
       const err = Object.assign(new Error('login refused'), { password: 'pw-in-error' });
       log.error({ event: 'x', err }, 'failed');`,
    );
    assert.doesNotMatch(out, /pw-bound|pw-in-error/);
    const line = JSON.parse(out.trim()) as {
      helo: string;
      password: string;
      smarthost: unknown;
      err: { message: string; type: string; password: string };
    };
    assert.equal(line.helo, 'in\\u202Evoice');
    assert.equal(line.password, '<redacted>');
    assert.deepEqual(line.smarthost, { host: 'h', password: '<redacted>' });
    assert.equal(line.err.message, 'login refused');
    assert.equal(line.err.type, 'Error');
    assert.equal(line.err.password, '<redacted>');
  });

  it('writes a buffered line on exit, also on process.exit()', async () => {
    const out = await run(
      `import { createLogger } from '${LOGGER}';
       const log = createLogger();
       log.info({ event: 'one' }, 'first');
       log.info({ event: 'two' }, 'second');
       process.exit(3);`,
    );
    assert.deepEqual(eventsOf(out), ['one', 'two']);
  });

  it('keeps the order of lines from several loggers (one buffer for standard output)', async () => {
    const out = await run(
      `import { createLogger } from '${LOGGER}';
       const a = createLogger();
       const b = createLogger();
       a.info({ event: 'a1' }, 'x');
       b.info({ event: 'b1' }, 'x');
       a.info({ event: 'a2' }, 'x');
       process.exit(0);`,
    );
    assert.deepEqual(eventsOf(out), ['a1', 'b1', 'a2']);
  });

  it('writes a line within a fraction of a second while the process keeps running', async () => {
    const spawned = Date.now();
    let seenAfter = -1;
    await run(
      `import { createLogger } from '${LOGGER}';
       const log = createLogger();
       log.info({ event: 'alive' }, 'still running');
       setTimeout(() => process.exit(0), 20000);`,
      (line, child) => {
        if (seenAfter === -1 && line.includes('"alive"')) {
          seenAfter = Date.now() - spawned;
          child.kill('SIGKILL');
        }
      },
    );
    // start-up takes some of it; without the periodic flush the line would wait the 20 s for exit
    assert.ok(seenAfter !== -1 && seenAfter < 5000, `line arrived after ${seenAfter} ms`);
  });
});

describe('one log format with trace correlation', () => {
  it('writes level names, ISO times and the service, with the active span’s trace_id and span_id', async () => {
    const { InMemorySpanExporter } = await import('@opentelemetry/sdk-trace');
    const { trace } = await import('@opentelemetry/api');
    const { LogCapture } = await import('../testing/harness.ts');
    const { createLogger } = await import('./logger.ts');
    const { startTracing } = await import('@sluice/telemetry/tracing');
    const tracing = await startTracing({ serviceName: 't', exporter: new InMemorySpanExporter() });
    try {
      const lines = new LogCapture();
      const log = createLogger({ service: 'sluice-operator', destination: lines });
      log.info({ event: 'outside' }, 'no span');
      await trace.getTracer('t').startActiveSpan('reconcile', async (span) => {
        log.warn({ event: 'inside' }, 'in a span');
        // a child bound to a span's ids (a relay session) keeps its own, once
        log.child({ trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16) }).info({ event: 'bound' }, 'bound');
        span.end();
        const [outside, inside, bound] = lines.lines;
        assert.equal(outside?.level, 'info');
        assert.equal(outside?.service, 'sluice-operator');
        assert.match(String(outside?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.equal(outside?.trace_id, undefined);
        assert.equal(inside?.level, 'warn');
        assert.equal(inside?.trace_id, span.spanContext().traceId);
        assert.equal(inside?.span_id, span.spanContext().spanId);
        assert.equal(bound?.trace_id, 'a'.repeat(32));
        assert.equal(lines.raw[2]?.match(/"trace_id"/g)?.length, 1, 'written once');
      });
    } finally {
      await tracing.shutdown();
    }
  });
});
