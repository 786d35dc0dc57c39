// What the admin CLIs (`queue`, `usage`) share: one HTTP request to the admin server with
// the bearer token, its answer as JSON or as a message a person can act on, and output
// that never passes control characters from an answer to a terminal.

export type AdminCliIo = {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** The admin server, e.g. http://127.0.0.1:9587 */
  url: string;
  /** The admin APIs' bearer token. */
  token: string;
  /** For tests; defaults to the global fetch. */
  fetch?: typeof fetch;
};

export type ApiResult = { ok: true; body: unknown } | { ok: false; message: string };

// An admin server that does not answer within this is not going to.
const REQUEST_TIMEOUT_MS = 30_000;

/** Sends one request; never throws for an HTTP or network failure. */
export async function adminRequest(io: AdminCliIo, method: string, path: string): Promise<ApiResult> {
  const base = io.url.endsWith('/') ? io.url : `${io.url}/`;
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    return { ok: false, message: `the admin API URL "${io.url}" is not a URL` };
  }
  let response: Response;
  let text: string;
  try {
    response = await (io.fetch ?? fetch)(url, {
      method,
      headers: { authorization: `Bearer ${io.token}`, accept: 'application/json' },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    text = await response.text();
  } catch (err: unknown) {
    return { ok: false, message: `cannot reach the admin API at ${io.url}: ${describe(err)}` };
  }
  let body: unknown;
  try {
    body = text === '' ? {} : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.ok && body !== undefined) return { ok: true, body };
  if (response.status === 401) {
    return { ok: false, message: 'the admin API refused the token (401 unauthorized)' };
  }
  const error = field(body, 'error');
  const id = field(body, 'queueId');
  const what = typeof error === 'string' ? printable(error) : `unexpected answer`;
  return {
    ok: false,
    message: `${typeof id === 'string' ? `${printable(id)}: ` : ''}${what} (HTTP ${response.status})`,
  };
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  // fetch wraps the socket error (ECONNREFUSED, ENOTFOUND) in its cause.
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}

export function field(body: unknown, key: string): unknown {
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
}

/** Remote answers end up on a terminal: control characters (escape sequences) must not. */
export function printable(value: string): string {
  return value.replace(/\p{Cc}+/gu, ' ').trim();
}

export function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}
