// Free space on the spool's filesystem. A relay that accepts mail it cannot write answers
// 451 after the client has sent the whole message; one that knows the disk is nearly full
// answers MAIL FROM with 452 4.3.1 (RFC 3463: mail system full) before any data, and
// reports not ready so that the Service sends new clients to other pods, as Postfix's
// smtpd refuses mail when free space is under 1.5 × message_size_limit. The space is
// sampled in the background (statfs every few seconds), so checking it costs a
// comparison per transaction.
import { statfs } from 'node:fs/promises';

/** How often the free space is read again. */
export const SAMPLE_INTERVAL_MS = 2000;

export interface SpaceSample {
  /** Bytes an unprivileged writer can still use (f_bavail × f_bsize). */
  freeBytes: number;
  /** Size of the filesystem in bytes. */
  totalBytes: number;
}

export class SpoolSpace {
  readonly #dir: string;
  readonly #intervalMs: number;
  readonly #onError: (err: unknown) => void;
  #sample: SpaceSample | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(dir: string, options: { intervalMs?: number; onError?: (err: unknown) => void } = {}) {
    this.#dir = dir;
    this.#intervalMs = options.intervalMs ?? SAMPLE_INTERVAL_MS;
    this.#onError = options.onError ?? (() => undefined);
  }

  /** Reads the space once, then keeps reading it every interval until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The latest sample; undefined until the first read, or when statfs fails. */
  get sample(): SpaceSample | undefined {
    return this.#sample;
  }

  async refresh(): Promise<void> {
    try {
      const s = await statfs(this.#dir);
      this.#sample = { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
      this.#failing = false;
    } catch (err: unknown) {
      // unknown space does not stop mail: a write that fails is still refused with 451
      this.#sample = undefined;
      if (!this.#failing) this.#onError(err);
      this.#failing = true;
    }
  }
}

/** The space kept free: spool.reserveMegabytes, or 1.5 × the largest message accepted. */
export function reserveBytes(config: {
  spool: { reserveMegabytes?: number };
  limits: { maxMessageBytes: number };
}): number {
  const mb = config.spool.reserveMegabytes;
  return mb === undefined ? Math.ceil(1.5 * config.limits.maxMessageBytes) : mb * 1024 * 1024;
}

/** Whether a write failed because the filesystem (or the user's quota) is full. */
export function isOutOfSpace(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}
