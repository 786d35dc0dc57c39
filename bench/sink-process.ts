// Starts bench/sink.ts in its own process (so the sink has its own event loop, as an
// outside MTA would) and talks to it over IPC.
import { type ChildProcess, fork } from 'node:child_process';
import type { SinkStats } from './sink.ts';

export interface SinkProcess {
  port: number;
  pid: number;
  stats(): Promise<SinkStats>;
  /** Forgets what arrived so far (between runs). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSinkProcess(): Promise<SinkProcess> {
  const child: ChildProcess = fork(new URL('./sink.ts', import.meta.url), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting = new Map<number, (stats: SinkStats) => void>();
  let nextId = 1;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`sink exited (${code})`)));
    child.on('message', (message: { type: string; id?: number; port?: number; stats?: SinkStats }) => {
      if (message.type === 'listening' && message.port) resolve(message.port);
      if (message.id !== undefined && message.stats) {
        waiting.get(message.id)?.(message.stats);
        waiting.delete(message.id);
      }
    });
  });
  const ask = (type: string) =>
    new Promise<SinkStats>((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      child.send({ type, id });
    });
  return {
    port,
    pid: child.pid ?? 0,
    stats: () => ask('stats'),
    reset: async () => {
      await ask('reset');
    },
    stop: async () => {
      if (child.exitCode !== null) return;
      child.removeAllListeners('exit');
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
