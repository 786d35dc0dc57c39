// Sluice as the harness runs it: `node relay/src/main.ts --config <generated>`, a separate
// process like the peers, with its ports read back from its `started` log line.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword } from '@sluice/relay/password';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { Context } from '../environment.ts';
import { processTree } from '../proc-stats.ts';
import { flushAll } from '../redis-admin.ts';
import { spawnLogged, stopChild } from '../util.ts';
import { DNSBL_ZONE, type PeerOptions, POLICY, type RunningPeer } from './peer.ts';

// the relay's entry point, for a child process (resolving it does not load it)
const MAIN = fileURLToPath(import.meta.resolve('@sluice/relay/main'));

export interface SluiceOptions extends PeerOptions {
  state: 'memory' | 'redis';
  redisNodes?: string[];
  /** '127.0.0.1:PORT' of the DNS server holding the DNSBL zone; undefined turns DNSBL off. */
  dnsbl?: string;
  groupCommit: boolean;
  /** Extra Node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=…']. */
  nodeFlags?: string[];
  /** Top-level config sections replaced, for trying what a setting costs (e.g. { log: { level: 'warn' } }). */
  configOverrides?: Record<string, unknown>;
  /** The relay's entry point: another checkout's relay/src/main.ts (this one's by default). */
  main?: string;
}

export interface RunningSluice extends RunningPeer {
  adminPort: number;
  /** Values of a metric from /metrics, with their label strings. */
  metric(name: string): Promise<Array<{ labels: string; value: number }>>;
}

let hashed: { password: string; hash: Promise<string> } | undefined;

export async function startSluice(options: SluiceOptions): Promise<RunningSluice> {
  if (hashed?.password !== options.password) {
    hashed = { password: options.password, hash: hashPassword(options.password) };
  }
  const usersFile = join(options.workDir, 'users.json');
  await writeFile(
    usersFile,
    JSON.stringify({ users: [{ username: options.user, passwordHash: await hashed.hash }] }),
  );
  const config = {
    hostname: 'sluice.bench',
    listeners: [{ name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' }],
    tls: { certFile: options.certFile, keyFile: options.keyFile },
    auth: { allowPlaintext: true, methods: ['PLAIN', 'LOGIN'] },
    limits: {
      maxMessageBytes: POLICY.maxMessageBytes,
      maxRecipients: POLICY.maxRecipients,
      maxBadCommands: POLICY.maxBadCommands,
      maxConnectionsPerIp: 1000,
    },
    attachments: { blockedExtensions: POLICY.blockedExtensions },
    rateLimits: {
      // on, and high enough never to trigger: the cost of counting is what is measured
      perUser: [
        { what: 'messages', limit: 100_000_000, windowSeconds: 3600 },
        { what: 'recipients', limit: 100_000_000, windowSeconds: 86400 },
      ],
      concurrentConnectionsPerIp: 1000,
    },
    dnsbl: options.dnsbl
      ? {
          enabled: true,
          checkAt: 'connect',
          resolvers: [options.dnsbl],
          zones: [{ zone: DNSBL_ZONE, listedCodes: ['127.0.0.2-127.0.0.255'], action: 'reject' }],
        }
      : { enabled: false },
    delivery: {
      mode: 'smarthost',
      smarthost: { host: '127.0.0.1', port: options.sinkPort, tls: 'none' },
    },
    spool: { groupCommit: options.groupCommit },
    state:
      options.state === 'redis'
        ? { backend: 'redis', namespace: 'bench', redis: { nodes: options.redisNodes ?? [] } }
        : { backend: 'memory' },
    spoolDir: join(options.workDir, 'spool'),
    stateDir: join(options.workDir, 'state'),
    usersFile,
    admin: { address: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    ...options.configOverrides,
  };
  const configFile = join(options.workDir, 'config.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const logFile = join(options.workDir, 'sluice.log');
  const child = spawnLogged(
    process.execPath,
    [...(options.nodeFlags ?? []), options.main ?? MAIN, '--config', configFile],
    logFile,
  );
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', async (code) =>
      reject(new Error(`sluice exited (${code}): ${(await readFile(logFile, 'utf8')).slice(-2000)}`)),
    ),
  );
  exited.catch(() => {});
  const started = await Promise.race([
    waitFor(
      'sluice to start',
      async () => {
        const text = await readFile(logFile, 'utf8').catch(() => '');
        for (const line of text.split('\n')) {
          if (!line.includes('"started"')) continue;
          const parsed = JSON.parse(line) as {
            ports: Record<string, number>;
            adminPort: number;
            worker?: number;
          };
          // with workers > 1 each worker logs its own start; the primary's line (no worker) is the relay's
          if (parsed.worker === undefined) return parsed;
        }
        return undefined;
        // several workers load the relay's modules one after the other: slow on a busy machine
      },
      { timeoutMs: 60_000 },
    ),
    exited,
  ]).catch(async (err: unknown) => {
    await stopChild(child, 5_000);
    throw err;
  });
  const port = started.ports.submission;
  if (port === undefined) throw new Error('sluice started without a submission port');
  const adminPort = started.adminPort;
  const pid = child.pid ?? 0;
  return {
    name: 'Sluice',
    port,
    adminPort,
    // the primary and its workers (workers > 1)
    pids: () => processTree(pid),
    stop: () => stopChild(child, 30_000),
    async metric(name) {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const out: Array<{ labels: string; value: number }> = [];
      for (const line of text.split('\n')) {
        if (!line.startsWith(name)) continue;
        const match = /^([a-z_]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
        if (match?.[1] === name) out.push({ labels: match[2] ?? '', value: Number(match[3]) });
      }
      return out;
    },
  };
}

/**
 * n instances sharing one Redis, each with its own spool: what n relay pods behind a
 * Kubernetes Service are (the load generator spreads connections over them as the
 * Service would). Metrics are summed over the instances.
 */
export async function startSluiceReplicas(options: SluiceOptions, n: number): Promise<RunningSluice> {
  const instances: RunningSluice[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const workDir = join(options.workDir, `pod-${i}`);
      await mkdir(workDir);
      instances.push(await startSluice({ ...options, workDir }));
    }
  } catch (err: unknown) {
    await Promise.all(instances.map((s) => s.stop()));
    throw err;
  }
  const first = instances[0] as RunningSluice;
  return {
    name: `Sluice ×${n}`,
    port: first.port,
    ports: instances.map((s) => s.port),
    adminPort: first.adminPort,
    pids: () => instances.flatMap((s) => s.pids()),
    stop: async () => {
      await Promise.all(instances.map((s) => s.stop()));
    },
    async metric(name) {
      return (await Promise.all(instances.map((s) => s.metric(name)))).flat();
    },
  };
}

/**
 * Sluice with everything on, as the benchmarks measure it: Redis state (flushed first),
 * DNSBL against the environment's DNS server, attachment scan, group commit, fsync; with
 * pods > 1, that many instances sharing the Redis (startSluiceReplicas).
 */
export async function startFullSluice(
  env: Context,
  workDir: string,
  nodeFlags: string[] = [],
  configOverrides: Record<string, unknown> = {},
  pods = 1,
  main?: string,
): Promise<RunningSluice> {
  await flushAll(env.redisPort);
  const start = pods === 1 ? startSluice : (options: SluiceOptions) => startSluiceReplicas(options, pods);
  return start({
    workDir,
    sinkPort: env.sink.port,
    certFile: env.certFile,
    keyFile: env.keyFile,
    user: env.user,
    password: env.password,
    state: 'redis',
    redisNodes: [`127.0.0.1:${env.redisPort}`],
    dnsbl: env.dns.address,
    groupCommit: true,
    nodeFlags,
    configOverrides,
    ...(main ? { main } : {}),
  });
}
