// Measures the synchronous work an input causes, so a fuzz target fails on an event-loop
// stall and not only on a crash. A slice is timed twice: wall time (performance.now) and
// this thread's CPU time (process.threadCpuUsage). A stall is a slice over the bound on
// both clocks: wall time alone would also count the process being descheduled on a busy
// machine, CPU time alone would also count work spread over many turns of the loop.
import { setImmediate as nextTurn } from 'node:timers/promises';

export interface Slice {
  wallMs: number;
  cpuMs: number;
}

export class SliceProbe {
  #longest: Slice = { wallMs: 0, cpuMs: 0 };
  #start: { wall: number; cpu: NodeJS.CpuUsage } | null = null;

  /** The longest slice since reset (the one with the most CPU time). */
  get longest(): Slice {
    return this.#longest;
  }

  reset(): void {
    this.#longest = { wallMs: 0, cpuMs: 0 };
    this.#start = null;
  }

  /**
   * Runs fn and then waits for the next turn of the event loop, so the nextTick and
   * promise callbacks fn queued are part of the slice: stream work (a Transform's
   * push, a pipe's write) runs there rather than inside fn.
   */
  async slice<T>(fn: () => T): Promise<T> {
    this.begin();
    const value = fn();
    await nextTurn();
    this.end();
    return value;
  }

  /**
   * Starts a span that end() closes. Used around one SMTP command and its reply: the span
   * holds every slice the server ran for the command, so its CPU time bounds the longest.
   */
  begin(): void {
    this.#start = { wall: performance.now(), cpu: process.threadCpuUsage() };
  }

  end(): void {
    const start = this.#start;
    if (start === null) return;
    this.#start = null;
    const cpu = process.threadCpuUsage(start.cpu);
    const slice = { wallMs: performance.now() - start.wall, cpuMs: (cpu.user + cpu.system) / 1000 };
    if (slice.cpuMs > this.#longest.cpuMs) this.#longest = slice;
  }

  /** Whether the longest slice went over the bound on both clocks. */
  stalled(boundMs: number): boolean {
    return this.#longest.wallMs > boundMs && this.#longest.cpuMs > boundMs;
  }
}
