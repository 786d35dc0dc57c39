// Process facts from /proc: resident memory (VmRSS, and the kernel's own peak VmHWM) of a
// process or of a whole process tree (Postfix is many processes), sampled while a run goes.
import { readdirSync, readFileSync } from 'node:fs';

export interface MemoryStatus {
  rssKb: number;
  hwmKb: number;
}

/** VmRSS and VmHWM of one process, or undefined once it is gone. */
export function memoryStatus(pid: number): MemoryStatus | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

/** Proportional set size: shared pages divided among the processes that share them, so a sum over processes counts them once. */
export function pssKb(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
    return Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * The process and all its descendants. Read from each thread's `children` file: a scan of
 * every /proc/<pid>/stat took 1.7 ms on an idle machine, and the memory watch asks every
 * 50–100 ms from the load generator's own thread, whose delays are part of every latency
 * it measures. The scan is kept for a kernel without the children files.
 */
export function processTree(root: number): number[] {
  const out: number[] = [];
  const walk = (pid: number): boolean => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return true; // exited while we looked
    }
    out.push(pid);
    for (const task of tasks) {
      let children: string;
      try {
        children = readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1');
      } catch (err: unknown) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && task === String(pid)) return false;
        continue; // the thread ended meanwhile
      }
      for (const child of children.split(' ')) if (child !== '' && !walk(Number(child))) return false;
    }
    return true;
  };
  return walk(root) ? out : scanProcessTree(root);
}

/** processTree by the ppid field of every /proc/<pid>/stat. */
function scanProcessTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      // the command name is in parentheses and may hold spaces: fields start after ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid);
      if (list) list.push(pid);
      else children.set(ppid, [pid]);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) walk(child);
  };
  walk(root);
  return out;
}

/** CPU time (user + system, in seconds) of a process itself, its children excluded. */
/** The name, and user and system CPU seconds, in a /proc stat file's text. */
function statTimes(stat: string): { name: string; user: number; system: number } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime in clock ticks (USER_HZ 100)
  return {
    name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
    user: Number(fields[11]) / 100,
    system: Number(fields[12]) / 100,
  };
}

export function cpuSeconds(pid: number): number {
  try {
    const { user, system } = statTimes(readFileSync(`/proc/${pid}/stat`, 'latin1'));
    return user + system;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of a process's threads by thread name, user and system apart (the main
 * thread is under the process's own name; Node names libuv's pool `libuv-worker`, V8's
 * helpers `V8 DefaultWorke`, a worker thread `node` unless it names itself).
 */
export function threadCpuSeconds(pid: number): Map<string, { user: number; system: number }> {
  const byName = new Map<string, { user: number; system: number }>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const task of tasks) {
    try {
      const times = statTimes(readFileSync(`/proc/${pid}/task/${task}/stat`, 'latin1'));
      const name = task === String(pid) ? 'main' : times.name;
      const sum = byName.get(name) ?? { user: 0, system: 0 };
      sum.user += times.user;
      sum.system += times.system;
      byName.set(name, sum);
    } catch {
      // the thread ended meanwhile
    }
  }
  return byName;
}

export interface MemoryPeak {
  /** Largest sum of VmRSS over the watched processes at one sample. */
  peakRssKb: number;
  /** Sum over every process seen of its own peak (VmHWM): exact for one process, an upper bound for many. */
  hwmSumKb: number;
  /** Sum of VmRSS at the first sample (the baseline before the load). */
  startRssKb: number;
  /** CPU seconds (user + system) the processes used between the first and the last sample. */
  cpuSeconds: number;
  /** Largest sum of PSS over the watched processes (sampled every fifth tick: reading it costs more). */
  peakPssKb: number;
}

/** Samples the memory of the processes `pids()` returns, every intervalMs, until stop(). */
export class MemoryWatch {
  readonly #pids: () => number[];
  readonly #hwm = new Map<number, number>();
  readonly #cpu = new Map<number, { first: number; last: number }>();
  #peak = 0;
  #peakPss = 0;
  #ticks = 0;
  #start: number | undefined;
  #timer: NodeJS.Timeout;

  constructor(pids: () => number[], intervalMs = 100) {
    this.#pids = pids;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(final = false): void {
    let sum = 0;
    let pss = 0;
    const withPss = final || this.#ticks++ % 5 === 0;
    for (const pid of this.#pids()) {
      if (withPss) pss += pssKb(pid);
      const status = memoryStatus(pid);
      if (!status) continue;
      sum += status.rssKb;
      this.#hwm.set(pid, Math.max(this.#hwm.get(pid) ?? 0, status.hwmKb));
      const cpu = cpuSeconds(pid);
      const seen = this.#cpu.get(pid);
      // a process first seen after the start counts from zero
      if (seen) seen.last = cpu;
      else this.#cpu.set(pid, { first: this.#start === undefined ? cpu : 0, last: cpu });
    }
    this.#start ??= sum;
    this.#peak = Math.max(this.#peak, sum);
    this.#peakPss = Math.max(this.#peakPss, pss);
  }

  stop(): MemoryPeak {
    clearInterval(this.#timer);
    this.#sample(true);
    let hwmSumKb = 0;
    for (const kb of this.#hwm.values()) hwmSumKb += kb;
    let cpu = 0;
    for (const { first, last } of this.#cpu.values()) cpu += last - first;
    return {
      peakRssKb: this.#peak,
      hwmSumKb,
      startRssKb: this.#start ?? 0,
      cpuSeconds: cpu,
      peakPssKb: this.#peakPss,
    };
  }
}
