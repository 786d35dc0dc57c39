// The one polling helper of every workspace's tests and benchmarks (exported as
// @sluice/relay/testing/wait-for): waitFor(what, check, { timeoutMs, intervalMs, detail }).
import { inspect } from 'node:util';

export interface WaitForOptions {
  /** How long to keep checking. Only a failing wait runs it out, so it is generous for a loaded machine. */
  timeoutMs?: number;
  /**
   * The longest pause between checks. The first pauses are shorter (10 ms, doubling up to this), so a
   * condition that is nearly true is seen at once and a slow one (an API server, kubectl) is not hammered.
   */
  intervalMs?: number;
  /** More to say when the deadline passes (the state of the system under test). */
  detail?: () => string | Promise<string>;
}

const FIRST_PAUSE_MS = 10;

/**
 * Calls `check` until it returns a value other than undefined or false, and returns that value. A check
 * that throws means "not yet". After the deadline it fails naming `what`, with what the last check
 * returned or threw.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  { timeoutMs = 20_000, intervalMs = 100, detail }: WaitForOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let pause = Math.min(FIRST_PAUSE_MS, intervalMs);
  let last: { value: unknown } | { error: unknown } = { value: undefined };
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = { value };
    } catch (err: unknown) {
      last = { error: err };
    }
    if (Date.now() > deadline) {
      const seen =
        'error' in last
          ? `the last check threw ${describe(last.error)}`
          : `the last check returned ${last.value}`;
      const more = detail ? await detail() : '';
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what} (${seen})${more ? `\n${more}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, intervalMs);
  }
}

function describe(err: unknown): string {
  return err instanceof Error
    ? `${err.name}: ${err.message}`
    : inspect(err, { depth: 2, breakLength: Infinity });
}
