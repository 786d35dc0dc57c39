// One root logger (pino, NDJSON on stdout); every session gets a child with its
// sessionId, every message adds its queueId. Field names are the contract in DESIGN.md.
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

// Standard output takes log lines in batches: one write per ~4 KB (about ten lines) instead
// of one per line, which was a third of the relay's write calls under load. A line waits at
// most FLUSH_MS; the rest is written on exit, so only a SIGKILL can lose the last ~0.1 s.
const BATCH_BYTES = 4096;
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

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'sluice-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'passwordHash', '*.passwordHash'], censor: '<redacted>' },
    },
    options.destination ?? stdoutDestination(),
  );
}
