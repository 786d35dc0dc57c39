// A relay run from a config file and its users file, kept in step with them: the
// reloader re-reads both on change or SIGHUP and applies them together or not at all.
import { loadRelayConfig, loadUsersFile, readUsersSource, usersWatchDir } from './config/load.ts';
import { Reloader } from './config/reloader.ts';
import type { RelayConfig, UsersFile } from './config/schema.ts';
import type { Logger } from './observability/logger.ts';
import { Relay, type StartRelayOptions } from './relay.ts';

export interface RunFromFilesOptions {
  configPath: string;
  /** The logger, made once the first config is read (its log.level may decide it). */
  logger: (first: RelayConfig) => Logger;
  /** Reloader debounce; tests that reload on demand set it far beyond their run. */
  debounceMs?: number;
  relay?: Omit<StartRelayOptions, 'config' | 'users' | 'logger'>;
  /** Applied to every config read, the first and each reload (a worker's own spool and ports). */
  adjust?: (config: RelayConfig) => RelayConfig;
  /** Runs once the first config is read, before the relay starts (taking over spools). */
  beforeStart?: (config: RelayConfig) => Promise<void>;
}

export async function runFromFiles(
  options: RunFromFilesOptions,
): Promise<{ relay: Relay; reloader: Reloader<RelayConfig, UsersFile>; logger: Logger }> {
  const adjust = options.adjust ?? ((config: RelayConfig) => config);
  const load = async (path: string) => adjust(await loadRelayConfig(path));
  const first = await load(options.configPath);
  const logger = options.logger(first);
  let relay: Relay | undefined;
  const reloader = new Reloader<RelayConfig, UsersFile>({
    config: { path: options.configPath, load },
    users: {
      path: first.usersFile,
      load: loadUsersFile,
      read: readUsersSource,
      watchDir: await usersWatchDir(first.usersFile),
    },
    logger,
    ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
    apply: async (config, users) => {
      await relay?.apply(config, users);
      relay?.metrics.configReloadsTotal.inc({ result: 'applied' });
      relay?.metrics.configLastReloadSuccessful.set(1);
    },
  });
  reloader.on('rejected', () => {
    relay?.metrics.configReloadsTotal.inc({ result: 'rejected' });
    relay?.metrics.configLastReloadSuccessful.set(0);
  });
  try {
    const { config, users } = await reloader.start();
    await options.beforeStart?.(config);
    relay = await Relay.start({ ...options.relay, config, users, logger });
  } catch (err: unknown) {
    reloader.close();
    throw err;
  }
  return { relay, reloader, logger };
}
