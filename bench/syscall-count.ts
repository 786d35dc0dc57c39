// Counts the fsync-family system calls of a running system with `strace -c`, attached to
// every process of it (and to the processes it forks). strace slows the traced processes
// down, so this is done in a separate pass whose timings are not reported.
import { type ChildProcess, spawn } from 'node:child_process';

const SYNC_CALLS = ['fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'msync'];

export interface SyscallCounter {
  /** Detaches and returns calls per system call name. */
  stop(): Promise<Map<string, number>>;
}

export async function countSyncCalls(pids: number[]): Promise<SyscallCounter> {
  const args = ['-f', '-c', '-e', `trace=${SYNC_CALLS.join(',')}`, ...pids.flatMap((p) => ['-p', String(p)])];
  const child: ChildProcess = spawn('strace', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  // strace says "Process N attached" once per thread; wait for all of them
  const deadline = Date.now() + 5000;
  while ((output.match(/attached/g)?.length ?? 0) < pids.length && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    stop: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT');
      await exited;
      const calls = new Map<string, number>();
      // "% time     seconds  usecs/call     calls    errors syscall"
      for (const line of output.split('\n')) {
        const fields = line.trim().split(/\s+/);
        const name = fields.at(-1) ?? '';
        if (!SYNC_CALLS.includes(name)) continue;
        const numeric = fields.slice(0, -1).map(Number);
        // calls is the 4th column; the errors column may be empty
        const n = numeric[3];
        if (n !== undefined && Number.isFinite(n)) calls.set(name, n);
      }
      return calls;
    },
  };
}
