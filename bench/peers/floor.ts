// The library floor (bench/floor-relay.ts) as a system under test: smtp-server in, nodemailer
// out, nothing between. Not a peer a provider could run: a yardstick for what the chosen
// SMTP libraries alone cost per message.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { spawnLogged, stopChild } from '../util.ts';
import type { PeerOptions, RunningPeer } from './peer.ts';

const PROGRAM = fileURLToPath(new URL('../floor-relay.ts', import.meta.url));

/** durable: each message is written and fsynced to a file before its 250 (see floor-relay.ts). */
export async function startFloor(options: PeerOptions & { durable: boolean }): Promise<RunningPeer> {
  const logFile = join(options.workDir, 'floor.log');
  const spool = join(options.workDir, 'floor-spool');
  if (options.durable) await mkdir(spool);
  const child = spawnLogged(
    process.execPath,
    [
      PROGRAM,
      String(options.sinkPort),
      options.certFile,
      options.keyFile,
      options.user,
      options.password,
      ...(options.durable ? [spool] : []),
    ],
    logFile,
  );
  const port = await waitFor('the floor relay to listen', async () => {
    if (child.exitCode !== null) throw new Error(`floor relay exited: ${await readFile(logFile, 'utf8')}`);
    const match = /^listening (\d+)$/m.exec(await readFile(logFile, 'utf8').catch(() => ''));
    return match ? Number(match[1]) : undefined;
  });
  const pid = child.pid ?? 0;
  return {
    name: options.durable ? 'library floor, durable' : 'library floor',
    port,
    pids: () => [pid],
    stop: () => stopChild(child),
  };
}
