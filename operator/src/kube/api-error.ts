// Failures of Kubernetes API requests, as one error class with the HTTP status and the
// API's reason (NotFound, Conflict, Gone, ...), whichever client-node path produced them.
import { ApiException } from '@kubernetes/client-node';

export class KubeApiError extends Error {
  readonly code = 'SLUICE_ERR_KUBE_API';
  /** HTTP status; 0 when the request did not get an answer */
  readonly status: number;
  /** The Status object's reason, e.g. NotFound, AlreadyExists, Conflict, Expired */
  readonly reason: string;
  constructor(status: number, reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
  }
}

interface StatusBody {
  reason?: unknown;
  message?: unknown;
}

function fromStatusBody(status: number, body: unknown, fallback: string, cause: unknown): KubeApiError {
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const b = (parsed && typeof parsed === 'object' ? parsed : {}) as StatusBody;
  const reason = typeof b.reason === 'string' ? b.reason : '';
  const message = typeof b.message === 'string' ? b.message : fallback;
  return new KubeApiError(status, reason, `${status} ${reason || 'Error'}: ${message}`, { cause });
}

/** Any error from a request, as a KubeApiError (status 0 for network errors). */
export function toKubeApiError(err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  if (err instanceof ApiException) {
    return fromStatusBody(err.code, err.body, 'request failed', err);
  }
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === 'number') {
    return new KubeApiError(statusCode, '', String((err as Error).message), { cause: err });
  }
  return new KubeApiError(0, '', err instanceof Error ? err.message : String(err), { cause: err });
}

export function httpError(status: number, body: string): KubeApiError {
  return fromStatusBody(status, body, body.slice(0, 200) || 'request failed', undefined);
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409;
}

export function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 410;
}
