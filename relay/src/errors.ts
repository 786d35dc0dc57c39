// Errors the relay raises on purpose carry a stable code; callers branch on the code,
// never on the message text. docs/reference/errors.md lists every code (a test keeps it honest).

export const ERROR_CODES = {
  SLUICE_ERR_CONFIG_INVALID: 'A config or users file does not match the schema',
  SLUICE_ERR_CONFIG_PARSE: 'A config or users file is not valid YAML or JSON',
  SLUICE_ERR_CONFIG_READ: 'A config, users, certificate or key file cannot be read',
  SLUICE_ERR_DUPLICATE_USER: 'The users file names the same username twice',
  SLUICE_ERR_OTEL_ENV: 'An OpenTelemetry environment variable (OTEL_*) is malformed',
  SLUICE_ERR_PASSWORD_HASH: 'A password hash is malformed or uses an unsupported scheme',
  SLUICE_ERR_PROXY_HEADER: 'A PROXY protocol header is missing or malformed',
  SLUICE_ERR_SPOOL: 'A message could not be written to the spool',
  SLUICE_ERR_STATE_UNAVAILABLE: 'Shared state (Redis) is unreachable and the policy says to fail temporarily',
  SLUICE_ERR_USAGE: 'The command line is wrong',
  SLUICE_ERR_WORKER_START: 'A worker process (workers > 1) exited before it served',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SluiceError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SluiceError';
    this.code = code;
  }
}

export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}
