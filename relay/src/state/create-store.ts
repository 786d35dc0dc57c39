// The state store a relay config asks for: in-memory for one process, or Redis shared
// by every pod of the policy, falling back to local state while Redis is unreachable.
import { readFile } from 'node:fs/promises';
import type { RelayConfig } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { MemoryStore } from './memory-store.ts';
import { createRedisClient, RedisStore, setRedisPassword } from './redis-store.ts';
import { ResilientStore } from './resilient-store.ts';
import type { StateStore } from './store.ts';

const INITIAL_CONNECT_WAIT_MS = 3000;

export interface StateHealth {
  /** True while state is shared with the other pods. */
  readonly shared: boolean;
  readonly detail: string;
}

export async function createStateStore(
  config: RelayConfig['state'],
  logger: Logger,
): Promise<{
  store: StateStore;
  health: StateHealth;
  onHealth: (fn: (shared: boolean) => void) => void;
  /** Redis only: the password for the next connections (state.redis.passwordFile changed) */
  setPassword?: (password: string) => void;
}> {
  if (config.backend === 'memory' || !config.redis) {
    const store = new MemoryStore();
    return {
      store,
      health: { shared: false, detail: 'memory (this process only)' },
      onHealth: () => undefined,
    };
  }
  const redis = config.redis;
  let password: string | undefined;
  if (redis.passwordFile) {
    try {
      password = (await readFile(redis.passwordFile, 'utf8')).trim();
    } catch (err: unknown) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new SluiceError(
        'SLUICE_ERR_CONFIG_READ',
        `state.redis.passwordFile: cannot read ${redis.passwordFile} (${code})`,
        { cause: err },
      );
    }
  }
  const client = createRedisClient({ ...redis, ...(password === undefined ? {} : { password }) });
  const store = new ResilientStore({
    redis: new RedisStore({ client, namespace: config.namespace }),
    client,
    local: new MemoryStore(),
    onDown: config.onSharedStateDown,
    logger,
  });
  // Give Redis a moment before the relay takes mail, so the first sessions already count
  // in shared state; a Redis that is down at start-up only delays it by this much.
  if (!store.shared) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, INITIAL_CONNECT_WAIT_MS);
      timer.unref();
      store.once('health', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return {
    store,
    health: store,
    onHealth: (fn) => store.on('health', (h: { shared: boolean }) => fn(h.shared)),
    setPassword: (next) => setRedisPassword(client, next),
  };
}
