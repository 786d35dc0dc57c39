// A real redis-server for tests, on 127.0.0.1 and a free port, with no persistence.
// It can be stopped, killed (to play an outage) and restarted on the same port.
// Every test that starts one stops it in `after`; an exit hook kills any left over.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
const START_DEADLINE_MS = 10_000;

export interface RedisServerHandle {
  port: number;
  /** The address list a Redis config takes. */
  nodes: string[];
  /** SIGTERM, and wait for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL (an outage), and wait for the process to exit. */
  kill(): Promise<void>;
  /** Starts again on the same port, with an empty data set. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open but nothing answers (a hung server). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface RedisServerOptions {
  /** Extra command-line arguments, e.g. ['--cluster-enabled', 'yes']. */
  args?: string[];
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-redis-'));
  const started = await launchOnFreePort('redis-server', dir, async (port) =>
    serverArgs(port, dir, options.args ?? []),
  );
  const port = started.port;
  let current: ChildProcess = started.child;
  const end = async (signal: NodeJS.Signals) => {
    await terminate(current, signal);
    await rm(dir, { recursive: true, force: true });
  };
  return {
    port,
    nodes: [`127.0.0.1:${port}`],
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    pause: () => current.kill('SIGSTOP'),
    resume: () => current.kill('SIGCONT'),
    async restart() {
      await terminate(current, 'SIGKILL');
      const deadline = Date.now() + START_DEADLINE_MS;
      for (;;) {
        try {
          await mkdir(dir, { recursive: true });
          current = await launch(port, serverArgs(port, dir, options.args ?? []));
          return;
        } catch (err: unknown) {
          if (Date.now() > deadline) throw err;
        }
      }
    },
  };
}

export interface RedisSentinelHandle {
  port: number;
  /** The address list a sentinel-mode Redis config takes. */
  nodes: string[];
  stop(): Promise<void>;
}

/**
 * A real Redis Sentinel (redis-server in sentinel mode) watching the master on
 * masterPort under masterName, quorum 1, on 127.0.0.1 and a free port. It writes its
 * state into its own config file, so that file lives in a directory of its own.
 */
export async function startRedisSentinel(
  masterName: string,
  masterPort: number,
): Promise<RedisSentinelHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-sentinel-'));
  const { port, child } = await launchOnFreePort('redis sentinel', dir, async (port) => {
    const file = join(dir, 'sentinel.conf');
    await writeFile(
      file,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 5000`,
        '',
      ].join('\n'),
    );
    return [file, '--sentinel'];
  });
  return {
    port,
    nodes: [`127.0.0.1:${port}`],
    async stop() {
      await terminate(child, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Launches redis-server on a free port with the arguments argsFor gives for it. A port
 * found free can be taken before redis binds it: a few are tried. On failure `dir` is
 * removed.
 */
async function launchOnFreePort(
  what: string,
  dir: string,
  argsFor: (port: number) => Promise<string[]>,
): Promise<{ port: number; child: ChildProcess }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return { port, child: await launch(port, await argsFor(port)) };
    } catch (err: unknown) {
      lastError = err;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`${what} did not start`, { cause: lastError });
}

/** A plain server's command line: no persistence, loopback only. */
function serverArgs(port: number, dir: string, extra: string[]): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    '--dir',
    dir,
    ...extra,
  ];
}

/** Spawns redis-server with args and resolves once port answers PING; rejects if it exits first. */
async function launch(port: number, args: string[]): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));

  const exited = new Promise<never>((_, reject) => {
    child.once('exit', (code, signal) =>
      reject(new Error(`redis-server exited (${code ?? signal}) on port ${port}: ${output}`)),
    );
    child.once('error', reject);
  });
  exited.catch(() => {}); // only observed while starting
  const deadline = Date.now() + START_DEADLINE_MS;
  try {
    while (!(await Promise.race([ping(port), exited]))) {
      if (Date.now() > deadline)
        throw new Error(`redis-server on port ${port} did not answer PING: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } catch (err: unknown) {
    await terminate(child, 'SIGKILL');
    throw err;
  }
  return child;
}

/** Sends the signal and waits until the process has exited. */
async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused server acts on SIGTERM only once running
  await exited;
}

/** True when something on the port answers +PONG (or -NOAUTH: it is up and wants a password). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}
