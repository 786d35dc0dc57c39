// One root logger (pino, NDJSON on stdout); every session gets a child with its
// sessionId, every message adds its queueId. Field names are the contract in DESIGN.md.
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'sluice-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'passwordHash', '*.passwordHash'], censor: '<redacted>' },
    },
    options.destination,
  );
}
