// One worker of a relay with `workers: N` (N > 1): the whole relay in a process of its
// own, with its own spool directory (<spoolDir>/w<i>), its SMTP listeners bound with
// SO_REUSEPORT to the ports the primary chose (the kernel spreads connections over the
// workers, no handle passes through the primary), and its admin server on loopback, port
// 0, for the primary to reach. Its metrics go to the primary over the cluster channel,
// asked for only once it serves (a worker still starting would leave the request unanswered).
import { dirname, join } from 'node:path';
import type { RelayConfig } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import { runFromFiles } from '../run-from-files.ts';
import { isMetricsRequest, type MetricsResponse, type WorkerReady } from './protocol.ts';
import { spoolsToAdopt, takeOverSpools, workerSpoolDir } from './spool-ownership.ts';

export interface WorkerOptions {
  configPath: string;
  index: number;
  count: number;
  /** The port of each listener, by name, as the primary resolved them (port 0 included). */
  ports: Readonly<Record<string, number>>;
  logger: (first: RelayConfig) => Logger;
  /** Tells the primary (process.send of a cluster worker). */
  send: (message: WorkerReady) => void;
}

/** The worker's view of the config: its own spool, the shared ports, admin on loopback. */
export function workerConfig(
  config: RelayConfig,
  index: number,
  ports: Readonly<Record<string, number>>,
): RelayConfig {
  return {
    ...config,
    spoolDir: workerSpoolDir(config.spoolDir, index),
    // the self-signed certificate is shared (the primary makes it before forking)
    stateDir: config.stateDir ?? join(config.spoolDir, '..', 'state'),
    listeners: config.listeners.map((l) => ({ ...l, port: ports[l.name] ?? l.port })),
    admin: { ...config.admin, address: '127.0.0.1', port: 0 },
  };
}

export async function runWorker(options: WorkerOptions) {
  let logger: Logger | undefined;
  const started = await runFromFiles({
    configPath: options.configPath,
    logger: (first) => {
      logger = options.logger(first);
      return logger;
    },
    adjust: (config) => workerConfig(config, options.index, options.ports),
    relay: { clusterWorker: true },
    // mail of the spools this worker owns is moved into its own before its queue is scanned
    beforeStart: async (config) =>
      takeOverSpools(
        await spoolsToAdopt(dirname(config.spoolDir), options.count, options.index),
        config.spoolDir,
        logger,
      ),
  });
  const registry = started.relay.metrics.registry;
  process.on('message', (message: unknown) => {
    if (!isMetricsRequest(message)) return;
    void registry.getMetricsAsJSON().then((metrics) => {
      const response: MetricsResponse = { type: 'sluice:metrics-response', id: message.id, metrics };
      process.send?.(response);
    });
  });
  options.send({ type: 'sluice:worker-ready', index: options.index, adminPort: started.relay.adminPort });
  return started;
}
