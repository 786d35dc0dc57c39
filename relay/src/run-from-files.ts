// A relay run from a config file and its users file, kept in step with them: the
// reloader re-reads both on change or SIGHUP and applies them together or not at all.
import {
  loadUsersFile,
  readConfigFile,
  readUsersSource,
  relayConfigFromText,
  usersWatchDir,
} from './config/load.ts';
import { Reloader } from './config/reloader.ts';
import type { RelayConfig, UsersFile } from './config/schema.ts';
import type { Logger } from './observability/logger.ts';
import { Relay, type StartRelayOptions } from './relay.ts';

export interface RunFromFilesOptions {
  configPath: string;
  /**
   * The config file's text as the caller read it (to decide how to run, say): the logger,
   * the users file and the relay are then all set up from this one read. Read here when absent.
   */
  configText?: string;
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
  const parse = (text: string, path: string) => adjust(relayConfigFromText(text, path));
  const firstText = options.configText ?? (await readConfigFile(options.configPath));
  const first = parse(firstText, options.configPath);
  const logger = options.logger(first);
  let relay: Relay | undefined;
  const reloader = new Reloader<RelayConfig, UsersFile>({
    config: { path: options.configPath, parse, initial: { text: firstText, value: first } },
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
