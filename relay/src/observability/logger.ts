// One root logger (pino, NDJSON on stdout); every session gets a child with its
// sessionId, every message adds its queueId. Field names are the contract in DESIGN.md.
// Lines carry no surprises for whoever reads them: a field a logger is already bound to
// is not written twice (pino would repeat the key), and characters that change how text
// is displayed (bidirectional overrides such as U+202E, zero-width characters, line and
// paragraph separators) are written as \u escapes; JSON escapes the control characters.
import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

// Standard output takes log lines in batches: one write per ~16 KB (about eight accepted and
// delivered messages' lines) instead of one per line, which was a third of the relay's write
// calls under load (4 KB batches were still 0.6 writes a message). Just under sonic-boom's
// largest write (16 KiB), and a quarter of a pipe's 64 KiB, so a container runtime's pipe
// takes it at once. A line waits at most FLUSH_MS; the rest is written on exit, so only a
// SIGKILL can lose the last ~0.1 s.
const BATCH_BYTES = 16_000;
const FLUSH_MS = 100;

let stdout: DestinationStream | undefined;

/** One for the process, shared by every logger that writes to standard output. */
function stdoutDestination(): DestinationStream {
  if (stdout) return stdout;
  const destination = pino.destination({
    dest: 1,
    sync: true,
    minLength: BATCH_BYTES,
    periodicFlush: FLUSH_MS,
  });
  process.on('exit', () => destination.flushSync());
  stdout = destination;
  return destination;
}

const INVISIBLE = /[\p{Cf}\u2028\u2029]/gu;
const HAS_INVISIBLE = /[\p{Cf}\u2028\u2029]/u;

/** Text with format characters (bidi overrides, zero-width) and line separators as \uXXXX. */
export function escapeInvisible(text: string): string {
  return text.replace(
    INVISIBLE,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`,
  );
}

function escapeValue(value: unknown): unknown {
  if (typeof value === 'string') return HAS_INVISIBLE.test(value) ? escapeInvisible(value) : value;
  if (Array.isArray(value) && value.some((v) => typeof v === 'string' && HAS_INVISIBLE.test(v))) {
    return value.map((v: unknown) => (typeof v === 'string' ? escapeInvisible(v) : v));
  }
  return value;
}

/** The fields with escapeInvisible applied to their strings (the same object when none needs it). */
function escapeFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(fields)) {
    const escaped = escapeValue(value);
    if (escaped === value) continue;
    out ??= { ...fields };
    out[key] = escaped;
  }
  return out ?? fields;
}

/** The keys each logger is bound to (a logger's bindings do not change once it is made). */
const boundKeys = new WeakMap<object, ReadonlySet<string>>();

function keysBoundTo(logger: Logger): ReadonlySet<string> {
  let keys = boundKeys.get(logger);
  if (!keys) {
    keys = new Set(Object.keys(logger.bindings()));
    boundKeys.set(logger, keys);
  }
  return keys;
}

/**
 * The one log format of Sluice's processes (the relay and the operator): NDJSON with level
 * names, ISO times, the service, and trace_id/span_id of the span the line belongs to (the
 * active span, or the ids a child logger was bound to).
 */
export function createLogger(
  options: { level?: string; destination?: DestinationStream; service?: string } = {},
): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service ?? 'sluice-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin(_fields, _level, logger) {
        const span = trace.getActiveSpan();
        if (!span?.isRecording() || keysBoundTo(logger as Logger).has('trace_id')) return {};
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
      formatters: {
        level: (label) => ({ level: label }),
        bindings: escapeFields,
        log: escapeFields,
      },
      hooks: {
        // a field the logger is bound to (a session's user, say) is not repeated in the line
        logMethod(args, method) {
          const [fields, ...rest] = args as unknown[];
          if (fields === null || typeof fields !== 'object' || fields instanceof Error) {
            return method.apply(this, args);
          }
          const bound = keysBoundTo(this);
          const own = fields as Record<string, unknown>;
          if (!Object.keys(own).some((key) => bound.has(key))) return method.apply(this, args);
          const kept = Object.fromEntries(Object.entries(own).filter(([key]) => !bound.has(key)));
          return method.apply(this, [kept, ...rest] as Parameters<typeof method>);
        },
      },
      redact: { paths: ['password', '*.password', 'passwordHash', '*.passwordHash'], censor: '<redacted>' },
    },
    options.destination ?? stdoutDestination(),
  );
}
