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
// SIGKILL can lose the last ~0.1 s. The lines of a batch are kept in a list and joined once:
// sonic-boom's own batching (minLength) measures the batch's byte length at every line,
// which flattens the growing string each time (half the relay's log allocation, bench/README).
const BATCH_BYTES = 16_000;
const FLUSH_MS = 100;

/** Lines held until a batch is full or FLUSH_MS has passed, then handed to sonic-boom in one write. */
class LineBatch implements DestinationStream {
  readonly #out: ReturnType<typeof pino.destination>;
  #lines: string[] = [];
  /** UTF-16 length of the lines held: a byte count for the ASCII that JSON lines mostly are. */
  #length = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(out: ReturnType<typeof pino.destination>) {
    this.#out = out;
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#length += line.length;
    if (this.#length >= BATCH_BYTES) this.#pass();
    else this.#timer ??= setTimeout(() => this.#pass(), FLUSH_MS).unref();
  }

  /** Writes what is held, and waits for nothing (sonic-boom writes synchronously here). */
  flushSync(): void {
    this.#pass();
    this.#out.flushSync();
  }

  #pass(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const text = this.#lines.length === 1 ? this.#lines[0]! : this.#lines.join('');
    this.#lines = [];
    this.#length = 0;
    this.#out.write(text);
  }
}

let stdout: LineBatch | undefined;

/** One for the process, shared by every logger that writes to standard output. */
function stdoutDestination(): DestinationStream {
  if (stdout) return stdout;
  const destination = new LineBatch(pino.destination({ dest: 1, sync: true }));
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

const CENSOR = '<redacted>';
/** Field names never written, at the top level or one object down. */
const SECRET = new Set(['password', 'passwordHash']);

/** An object value with its secret fields censored (the same object when it has none). */
function censorNested(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const own = value as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key of SECRET) {
    if (!Object.hasOwn(own, key)) continue;
    // an error keeps its prototype and its message and stack (not enumerable) for pino's serializer
    out ??=
      value instanceof Error
        ? Object.assign(
            Object.create(Object.getPrototypeOf(value) as object) as Record<string, unknown>,
            own,
            {
              message: value.message,
              stack: value.stack,
            },
          )
        : { ...own };
    out[key] = CENSOR;
  }
  return out ?? value;
}

/**
 * The fields as written: passwords and password hashes censored, at the top level or one
 * object down, and escapeInvisible applied to the strings (the same object when nothing
 * changes). One walk of the fields that a line makes anyway; pino's own redaction cloned
 * and walked each line again for its four paths.
 */
function writtenFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue;
    const value = fields[key];
    const written = SECRET.has(key) ? CENSOR : censorNested(escapeValue(value));
    if (written === value) continue;
    out ??= { ...fields };
    out[key] = written;
  }
  return out ?? fields;
}

/** The mixin's answer for a line outside any recording span (never written to). */
const NO_TRACE: Readonly<Record<string, never>> = Object.freeze({});

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

/** The last millisecond's time field. */
let lastTime = { ms: Number.NaN, field: '' };

/**
 * pino's isoTime, made once per millisecond rather than once per line (a Date and an ISO
 * string each): the lines of one turn of the event loop mostly share their millisecond.
 */
function isoTime(): string {
  const ms = Date.now();
  if (ms !== lastTime.ms) lastTime = { ms, field: `,"time":"${new Date(ms).toISOString()}"` };
  return lastTime.field;
}

/**
 * The one log format of Sluice's processes (the relay and the operator): NDJSON with level
 * names, ISO times, the service, and trace_id/span_id of the span the line belongs to (the
 * active span, or the ids a child logger was bound to).
 */
export function createLogger(
  options: { level?: string; destination?: DestinationStream; service?: string } = {},
): Logger {
  const root = pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service ?? 'sluice-relay' },
      timestamp: isoTime,
      mixin(_fields, _level, logger) {
        const span = trace.getActiveSpan();
        if (!span?.isRecording() || keysBoundTo(logger as Logger).has('trace_id')) return NO_TRACE;
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
      // pino's own strategy copies every line's fields into the mixin's object, also when
      // it is empty (no span): the line's own fields are then used as they are
      mixinMergeStrategy: (fields, mixed) => (mixed === NO_TRACE ? fields : Object.assign(mixed, fields)),
      formatters: {
        level: (label) => ({ level: label }),
        bindings: writtenFields,
        log: writtenFields,
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
    },
    options.destination ?? stdoutDestination(),
  );
  // pino applies formatters.bindings to the root's bindings only (a child's are written as
  // given), so a child's bindings go through the same censor and escapes here; every
  // logger made from this one inherits it
  // (and the keys it is bound to are known here, without parsing pino's bindings back)
  const child = root.child;
  root.child = function (this: Logger, bindings, childOptions) {
    const made = child.call(this, writtenFields(bindings), childOptions);
    boundKeys.set(made, new Set([...keysBoundTo(this), ...Object.keys(bindings)]));
    return made;
  } as typeof child;
  return root;
}
