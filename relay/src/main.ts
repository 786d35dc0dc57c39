#!/usr/bin/env node
// Entry point: the only place that reads process.env, argv and signals.
//   sluice-relay                      the embedded default (./var, loopback ports, demo user)
//   sluice-relay --config FILE        run from a config file (or SLUICE_CONFIG=FILE)
//   sluice-relay check-config FILE    validate a config and its users file, then exit
//   sluice-relay hash-password        read a password on stdin, print its hash
//   sluice-relay queue list|show|retry|flush|hold|release|delete   the queue API (SLUICE_ADMIN_URL, SLUICE_ADMIN_TOKEN)
//   sluice-relay usage [--user U] [--period hour|day] [--csv]   usage per user (the same variables)
//   sluice-relay suppression list|show|remove   suppressed recipients (the same variables)
// OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://otel-collector:4318) turns on trace export over
// OTLP/HTTP, OTEL_SERVICE_NAME names the service (sluice-relay); unset, no SDK is loaded.
import cluster from 'node:cluster';
import {
  startTracing,
  type Tracing,
  TracingEnvError,
  type TracingOptions,
  tracingOptionsFromEnv,
} from '@sluice/telemetry/tracing';
import { hashPassword } from './auth/password.ts';
import { runCheckConfig } from './cli/check-config.ts';
import { runHashPassword } from './cli/hash-password.ts';
import { runQueueCli } from './cli/queue.ts';
import { runSuppressionCli } from './cli/suppression.ts';
import { runUsageCli } from './cli/usage.ts';
import { demoPassword, embeddedConfig } from './config/defaults.ts';
import { readConfigFile, relayConfigFromText } from './config/load.ts';
import type { RelayConfig, UsersFile } from './config/schema.ts';
import { isSluiceError, SluiceError } from './errors.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { Relay } from './relay.ts';
import { runFromFiles } from './run-from-files.ts';
import { VERSION } from './version.ts';
import { startPrimaryAdmin } from './workers/primary-admin.ts';
import { isWorkerSignal, workerCount } from './workers/protocol.ts';
import { spoolsToAdopt, takeOverSpools } from './workers/spool-ownership.ts';
import { Supervisor } from './workers/supervisor.ts';
import { runWorker } from './workers/worker.ts';

function usage(): string {
  return [
    'usage: sluice-relay [--config FILE]',
    '       sluice-relay check-config FILE',
    '       sluice-relay hash-password [--scheme scrypt|argon2id] < password',
    '       sluice-relay queue list|show ID|retry ID|flush|hold|release|delete   (SLUICE_ADMIN_URL, SLUICE_ADMIN_TOKEN)',
    '       sluice-relay usage [--user U] [--period hour|day] [--from T] [--to T] [--csv|--json]   (the same)',
    '       sluice-relay suppression list|show ADDRESS|remove ADDRESS   (the same)',
  ].join('\n');
}

function fail(err: unknown): never {
  if (isSluiceError(err)) {
    process.stderr.write(`sluice-relay: ${err.code}\n${err.message}\n`);
  } else {
    process.stderr.write(
      `sluice-relay: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exit(1);
}

/** Span export, only when an OTLP endpoint is configured. */
function tracingFromEnv(): Promise<Tracing> {
  let options: TracingOptions;
  try {
    options = tracingOptionsFromEnv(process.env, 'sluice-relay');
  } catch (err: unknown) {
    // reported like the relay's own errors: the code, then what is wrong
    if (err instanceof TracingEnvError) throw new SluiceError(err.code, err.message, { cause: err });
    throw err;
  }
  return startTracing({ ...options, serviceVersion: VERSION });
}

async function runEmbedded(): Promise<void> {
  const tracing = await tracingFromEnv();
  // SLUICE_EMBEDDED_PORTS=random binds free ports instead of 2587/2465/9587 (the banner says which)
  const random = process.env.SLUICE_EMBEDDED_PORTS === 'random';
  const config = embeddedConfig(
    process.env.SLUICE_HOME ?? 'var',
    random ? { submission: 0, smtps: 0, admin: 0 } : undefined,
  );
  const password = demoPassword();
  const users: UsersFile = {
    users: [{ username: 'demo', passwordHash: await hashPassword(password), suspended: false }],
  };
  const logger = createLogger({ level: process.env.SLUICE_LOG_LEVEL ?? config.log.level });
  const relay = await Relay.start({ config, users, logger });
  const { submission, smtps } = relay.ports;
  process.stderr.write(
    [
      '',
      'Sluice is running on its embedded default (in-memory state, no Redis, no Kubernetes).',
      `  submission (STARTTLS): 127.0.0.1:${submission}`,
      `  implicit TLS:          127.0.0.1:${smtps}`,
      `  admin:                 http://127.0.0.1:${relay.adminPort}/healthz  /readyz  /metrics`,
      `  spool:                 ${config.spoolDir}`,
      `  demo user:             demo  password: ${password}`,
      '',
      `  swaks --server 127.0.0.1:${submission} --tls --auth PLAIN --auth-user demo \\`,
      `        --auth-password '${password}' --from demo@example.com --to you@example.net`,
      '',
    ].join('\n'),
  );
  handleSignals(relay, tracing);
}

function logLevel(config: RelayConfig): string {
  return process.env.SLUICE_LOG_LEVEL ?? config.log.level;
}

async function runFromFile(configPath: string): Promise<void> {
  const configText = await readConfigFile(configPath);
  const config = relayConfigFromText(configText, configPath);
  const count = workerCount(config.workers);
  if (count > 1) return runSupervisor(configPath, config, count);
  const tracing = await tracingFromEnv();
  let log: Logger | undefined;
  const { relay, reloader, logger } = await runFromFiles({
    configPath,
    configText,
    logger: (first) => {
      log = createLogger({ level: logLevel(first) });
      return log;
    },
    // mail left in worker spools (an earlier run with workers > 1) is delivered from here
    beforeStart: async (first) => takeOverSpools(await spoolsToAdopt(first.spoolDir, 1), first.spoolDir, log),
  });
  process.on('SIGHUP', () => {
    reloader.reload().then(
      (applied) => logger.info({ event: 'sighup_reload', applied }, 'config and users re-read on SIGHUP'),
      (err: unknown) => logger.error({ event: 'config_reload_failed', err }, 'reload on SIGHUP failed'),
    );
  });
  handleSignals(relay, tracing, () => reloader.close());
}

/** One worker of several (workers > 1), forked by the primary. */
async function runWorkerProcess(configPath: string): Promise<void> {
  const index = Number(process.env.SLUICE_WORKER_INDEX);
  const count = Number(process.env.SLUICE_WORKER_COUNT);
  const ports = JSON.parse(process.env.SLUICE_WORKER_PORTS ?? '{}') as Record<string, number>;
  const tracing = await tracingFromEnv();
  const { relay, reloader, logger } = await runWorker({
    configPath,
    index,
    count,
    ports,
    logger: (first) => createLogger({ level: logLevel(first) }).child({ worker: index }),
    send: (message) => process.send?.(message),
  });
  forwardedSignals();
  process.on('SIGHUP', () => {
    reloader.reload().then(
      (applied) => logger.info({ event: 'sighup_reload', applied }, 'config and users re-read on SIGHUP'),
      (err: unknown) => logger.error({ event: 'config_reload_failed', err }, 'reload on SIGHUP failed'),
    );
  });
  // a worker whose primary is gone exits at once (node:cluster does so when its channel
  // closes), as if killed: what it acknowledged is in its spool for the next start
  handleSignals(relay, tracing, () => reloader.close());
}

/** The primary of several workers: forks them, serves the admin port, passes signals on. */
async function runSupervisor(configPath: string, config: RelayConfig, count: number): Promise<void> {
  const logger = createLogger({ level: logLevel(config) });
  const supervisor = new Supervisor({
    config,
    count,
    logger,
    env: (index, ports) => ({
      SLUICE_WORKER_INDEX: String(index),
      SLUICE_WORKER_COUNT: String(count),
      SLUICE_WORKER_PORTS: JSON.stringify(ports),
      SLUICE_CONFIG_PATH: configPath,
    }),
  });
  try {
    await supervisor.start();
  } catch (err: unknown) {
    supervisor.kill();
    throw err;
  }
  const admin = await startPrimaryAdmin({ supervisor, config });
  logger.info(
    { event: 'started', ports: supervisor.ports, adminPort: admin.port, workers: count },
    'relay started',
  );
  process.on('SIGHUP', () => supervisor.signal('SIGHUP'));
  const stop = (signal: 'SIGTERM' | 'SIGINT') => {
    supervisor
      .stop(signal)
      .then(() => admin.close())
      .then(
        () => {
          logger.info({ event: 'stopped' }, 'every worker stopped');
          process.exit(0);
        },
        (err: unknown) => fail(err),
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** In a worker, a signal the primary passes on acts as if it had been received. */
function forwardedSignals(): void {
  process.on('message', (message: unknown) => {
    if (isWorkerSignal(message)) process.emit(message.signal, message.signal);
  });
}

/**
 * SIGTERM drains the relay in the order a rollout needs: readiness goes false at once
 * while the listeners keep accepting for drain.shutdownDelaySeconds (the time endpoints
 * and load balancers take to stop sending), then the listeners close, open sessions get
 * drain.sessionGraceSeconds, the queue drains or is handed on, buffered spans are flushed
 * and the process exits. A second signal ends the wait at once; SIGINT (Ctrl-C) does not
 * wait at all.
 */
function handleSignals(relay: Relay, tracing: Tracing, beforeExit?: () => void): void {
  let stopping = false;
  let endWait: (() => void) | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      endWait?.();
      return;
    }
    stopping = true;
    const { shutdownDelaySeconds, sessionGraceSeconds } = relay.config.drain;
    const delayMs = signal === 'SIGINT' ? 0 : shutdownDelaySeconds * 1000;
    relay.logger.info({ event: 'shutdown', signal, delaySeconds: delayMs / 1000 }, 'draining');
    relay.beginDrain();
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      endWait = () => {
        clearTimeout(timer);
        resolve();
      };
    })
      .then(() => {
        beforeExit?.();
        return relay.close(sessionGraceSeconds * 1000);
      })
      .then(() =>
        tracing.shutdown().catch((err: unknown) => {
          relay.logger.warn({ event: 'tracing_shutdown_failed', err }, 'spans may be lost');
        }),
      )
      .then(
        () => process.exit(0),
        (err: unknown) => fail(err),
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'hash-password') {
    process.exitCode = await runHashPassword(rest, {
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
    });
    return;
  }
  if (command === 'queue' || command === 'usage' || command === 'suppression') {
    const io = {
      stdout: process.stdout,
      stderr: process.stderr,
      url: process.env.SLUICE_ADMIN_URL ?? 'http://127.0.0.1:9587',
      token: process.env.SLUICE_ADMIN_TOKEN ?? '',
    };
    const run = { queue: runQueueCli, usage: runUsageCli, suppression: runSuppressionCli }[command];
    process.exitCode = await run(rest, io);
    return;
  }
  if (command === 'check-config') {
    process.exitCode = await runCheckConfig(rest, { stdout: process.stdout, stderr: process.stderr });
    return;
  }
  if (command === '--help' || command === '-h') {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if (cluster.isWorker) return runWorkerProcess(process.env.SLUICE_CONFIG_PATH ?? '');
  if (command === '--config') {
    const path = rest[0];
    if (!path) throw new Error(usage());
    return runFromFile(path);
  }
  if (command !== undefined) throw new Error(`unknown argument ${command}\n${usage()}`);
  if (process.env.SLUICE_CONFIG) return runFromFile(process.env.SLUICE_CONFIG);
  return runEmbedded();
}

main(process.argv.slice(2)).catch(fail);
