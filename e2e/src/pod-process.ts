// The container of a pod as a host process: its JSON log lines (stdout) are kept in
// memory for tests to read and, with stderr, written to a log file; stop() is kubelet's
// termination (SIGTERM, SIGKILL after the grace period). An exit hook kills it if the
// test process ends first.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export type LogLine = Record<string, unknown>;

export interface PodProcessOptions {
  command: string;
  args: readonly string[];
  env: Record<string, string>;
  cwd: string;
  logFile: string;
}

export class PodProcess {
  readonly pid: number;
  /** Every JSON line the process wrote to stdout, parsed. */
  readonly logs: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;
  #stderr = '';

  constructor(options: PodProcessOptions) {
    const child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.pid = child.pid ?? -1;
    const file = createWriteStream(options.logFile, { flags: 'a' });
    file.on('error', () => undefined); // the log file is a debugging aid; the lines are kept in memory
    let partial = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      file.write(chunk);
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.#parse(line);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      file.write(chunk);
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-4000);
    });
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        process.off('exit', killOnExit);
        if (partial) this.#parse(partial);
        file.end();
        resolve({ code, signal });
      };
      child.once('exit', done);
      child.once('error', () => done(null, null));
    });
  }

  #parse(line: string): void {
    if (!line.trim()) return;
    try {
      this.logs.push(JSON.parse(line) as LogLine);
    } catch {
      this.logs.push({ msg: line });
    }
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The end of what the process wrote to stderr (for error messages). */
  get stderr(): string {
    return this.#stderr;
  }

  /** Log lines with this `event` field. */
  events(event: string): LogLine[] {
    return this.logs.filter((l) => l.event === event);
  }

  /** SIGTERM; SIGKILL when it is still running after `graceMs`. Resolves once it exited. */
  async stop(graceMs: number): Promise<void> {
    if (this.running) {
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    await this.exited;
  }
}
