// Starts a real relay in-process on port 0 for tests, with its logs captured as parsed
// JSON lines, and a spool in a fresh temporary directory.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { hashPassword } from '../auth/password.ts';
import type { RelayConfig, UserRecord } from '../config/schema.ts';
import { validateRelayConfig } from '../config/validate.ts';
import { createLogger } from '../observability/logger.ts';
import { Relay, type StartRelayOptions } from '../relay.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { readSpooled } from '../spool/message-file.ts';

export const PASSWORD = 'correct horse battery staple';
let passwordHash: Promise<string> | undefined;

/** The hash of PASSWORD, computed once per test process (scrypt is slow on purpose). */
export function testPasswordHash(): Promise<string> {
  passwordHash ??= hashPassword(PASSWORD);
  return passwordHash;
}

export async function testUser(username: string, extra: Partial<UserRecord> = {}): Promise<UserRecord> {
  return { username, passwordHash: await testPasswordHash(), suspended: false, ...extra };
}

export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  /** The lines as written, for what parsing hides (repeated keys, escapes). */
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    callback();
  }
  events(event: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.event === event);
  }
}

export interface TestRelay {
  relay: Relay;
  dir: string;
  logs: LogCapture;
  /** Port of each listener by name: plain (tls none, plaintext AUTH allowed), submission, smtps. */
  port(name: string): number;
  queued(): Promise<Array<{ envelope: SpooledEnvelope; body: Buffer }>>;
  close(): Promise<void>;
}

export async function startTestRelay(
  options: {
    config?: Record<string, unknown>;
    users?: UserRecord[];
    deliver?: boolean;
    fsync?: boolean;
    /** Clock of usage buckets, abuse detection and rate limits. */
    now?: () => number;
    /** Process metrics (event-loop lag, memory) as in production; off by default. */
    defaultMetrics?: boolean;
    /** The delivery queue's limits (StartRelayOptions.queue). */
    queue?: StartRelayOptions['queue'];
  } = {},
): Promise<TestRelay> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-test-'));
  const { listeners, ...rest } = options.config ?? {};
  const config: RelayConfig = validateRelayConfig(
    {
      hostname: 'relay.test',
      listeners: listeners ?? [
        { name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
        { name: 'smtps', address: '127.0.0.1', port: 0, tls: 'implicit' },
      ],
      spoolDir: join(dir, 'spool'),
      stateDir: join(dir, 'state'),
      usersFile: join(dir, 'users.yaml'),
      admin: { address: '127.0.0.1', port: 0 },
      dnsbl: { enabled: false },
      ...rest,
    },
    'test config',
  );
  const logs = new LogCapture();
  const users = options.users ?? [await testUser('alice')];
  const relay = await Relay.start({
    config,
    users: { users },
    logger: createLogger({ level: 'debug', destination: logs }),
    defaultMetrics: options.defaultMetrics ?? false,
    deliver: options.deliver ?? false,
    ...(options.fsync === undefined ? {} : { fsync: options.fsync }),
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.queue === undefined ? {} : { queue: options.queue }),
  });
  return {
    relay,
    dir,
    logs,
    port: (name) => {
      const port = relay.ports[name];
      if (port === undefined) throw new Error(`no listener ${name}`);
      return port;
    },
    queued: async () => {
      const queueDir = relay.spool.queueDir;
      const ids = await relay.spool.list();
      return Promise.all(
        ids.map(async (id) => {
          const { envelope, body } = await readSpooled(queueDir, id);
          return { envelope: envelope as SpooledEnvelope, body };
        }),
      );
    },
    close: async () => {
      await relay.close(200, 200);
      const leftovers = await readdir(relay.spool.incomingDir).catch(() => []);
      await rm(dir, { recursive: true, force: true });
      if (leftovers.length > 0) throw new Error(`spool incoming/ not empty at close: ${leftovers.join(' ')}`);
    },
  };
}

/** A listener on which AUTH is offered without TLS, for raw-socket tests. */
export const PLAIN_LISTENER = { name: 'plain', address: '127.0.0.1', port: 0, tls: 'none' } as const;
