// Small helpers the harness shares: free ports, child processes, the accept benchmarks' load.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { RawSmtpClient } from '@sluice/relay/testing/smtp-client';

export { freePort } from '@sluice/relay/testing/ports';

/**
 * The load of the accept benchmarks (accept, dkim): `connections` clients at once, each AUTH
 * PLAIN and then `messages` messages of 3 recipients; fails unless every message gets 250.
 */
export async function sendAcceptLoad(o: {
  port: number;
  auth: { user: string; password: string };
  sender: string;
  body: string;
  connections: number;
  messages: number;
}): Promise<void> {
  await Promise.all(
    Array.from({ length: o.connections }, async () => {
      const c = await RawSmtpClient.connect(o.port);
      await c.greeting();
      await c.ehlo();
      await c.authPlain(o.auth.user, o.auth.password);
      for (let i = 0; i < o.messages; i++) {
        const replies = await c.sendRaw(o.sender, ['a@x.test', 'b@x.test', 'c@x.test'], o.body);
        if (replies.at(-1)?.code !== 250) throw new Error(`not accepted: ${replies.at(-1)?.text}`);
      }
      await c.quit();
    }),
  );
}

/** Spawns a long-running peer with stdout and stderr appended to a log file. */
export function spawnLogged(
  command: string,
  args: string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  return child;
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Runs a command to completion; rejects with its output when it fails. */
export function run(
  command: string,
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${output}`)),
    );
    child.stdin.end(options.input ?? '');
  });
}
