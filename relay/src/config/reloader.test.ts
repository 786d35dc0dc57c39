import assert from 'node:assert/strict';
import { on } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import {
  loadRelayConfig,
  loadUsersFile,
  readConfigFile,
  readUsersSource,
  relayConfigFromText,
  usersWatchDir,
} from './load.ts';
import { Reloader, type ReloaderEvents } from './reloader.ts';
import type { RelayConfig, UsersFile } from './schema.ts';
import { ConfigError } from './validate.ts';

const HASH = '$2b$04$gCDE0OjZBnNGGZs4MN7Yf.Xv3KDnKact7IJjxMzHLi.GP21dQDgha';
const DEADLINE_MS = 5000;

function configText(maxRecipients: number): string {
  return `listeners:\n  - name: submission\n    port: 0\nspoolDir: spool\nusersFile: users.yaml\nlimits:\n  maxRecipients: ${maxRecipients}\n`;
}

function usersText(...names: string[]): string {
  return `users:\n${names.map((n) => `  - username: ${n}\n    passwordHash: "${HASH}"\n`).join('')}`;
}

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-reloader-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Applied {
  config: RelayConfig;
  users: UsersFile;
  changed: { config: boolean; users: boolean };
}

/** A reloader over real files, a real pino logger writing NDJSON to memory, and a log of apply() calls. */
async function setUp(
  t: TestContext,
  files: { configPath: string; usersPath: string },
  options: {
    debounceMs?: number;
    apply?: (a: Applied) => void;
    usersDir?: boolean;
    /** The config's text as a caller read it before start() (as main.ts does). */
    configText?: string;
  } = {},
) {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const applied: Applied[] = [];
  const reloader = new Reloader<RelayConfig, UsersFile>({
    config:
      options.configText === undefined
        ? { path: files.configPath, load: loadRelayConfig }
        : {
            path: files.configPath,
            parse: relayConfigFromText,
            initial: {
              text: options.configText,
              value: relayConfigFromText(options.configText, files.configPath),
            },
          },
    users: {
      path: files.usersPath,
      load: loadUsersFile,
      ...(options.usersDir ? { read: readUsersSource, watchDir: await usersWatchDir(files.usersPath) } : {}),
    },
    apply: (config, users, changed) => {
      options.apply?.({ config, users, changed });
      applied.push({ config, users, changed });
    },
    debounceMs: options.debounceMs ?? 50,
    logger,
  });
  t.after(() => reloader.close());
  const initial = await reloader.start();
  return { reloader, initial, applied, logs };
}

async function plainFiles(maxRecipients = 30) {
  const dir = await mkdtemp(join(root, 'plain-'));
  const configPath = join(dir, 'config.yaml');
  const usersPath = join(dir, 'users.yaml');
  await writeFile(configPath, configText(maxRecipients));
  await writeFile(usersPath, usersText('alice'));
  return { dir, configPath, usersPath };
}

let tmpCounter = 0;
/** Replaces a file the way careful editors and tools do: write aside, then rename over. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${++tmpCounter}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/** Resolves with the first matching event, or fails after the deadline. Listens from the call on. */
async function nextEvent<K extends keyof ReloaderEvents>(
  reloader: Reloader<RelayConfig, UsersFile>,
  event: K,
  predicate: (payload: ReloaderEvents[K][0]) => boolean = () => true,
): Promise<ReloaderEvents[K][0]> {
  const signal = AbortSignal.timeout(DEADLINE_MS);
  try {
    for await (const [payload] of on(reloader, event, { signal })) {
      if (predicate(payload)) return payload;
    }
  } catch (err: unknown) {
    if (signal.aborted) throw new Error(`no matching '${event}' event within ${DEADLINE_MS} ms`);
    throw err;
  }
  throw new Error(`'${event}' events ended`);
}

const rejectedLines = (logs: Record<string, unknown>[]) => logs.filter((l) => l.event === 'config_rejected');

describe('Reloader', () => {
  it('reloads a users directory when one of its shards changes', async (t) => {
    const dir = await mkdtemp(join(root, 'shards-'));
    const configPath = join(dir, 'config.yaml');
    const usersPath = join(dir, 'users');
    await mkdir(usersPath);
    await writeFile(configPath, configText(30));
    const shard = (...names: string[]) =>
      JSON.stringify({ users: names.map((username) => ({ username, passwordHash: HASH })) });
    await writeFile(join(usersPath, 'users-00.json'), shard('alice'));
    await writeFile(join(usersPath, 'users-01.json'), shard('bob'));
    const { reloader, initial, applied } = await setUp(t, { configPath, usersPath }, { usersDir: true });
    assert.deepEqual(
      initial.users.users.map((u) => u.username),
      ['alice', 'bob'],
    );

    const usersApplied = nextEvent(reloader, 'applied', (e) => e.which === 'users');
    await writeAtomic(join(usersPath, 'users-01.json'), shard('bob', 'carol'));
    await usersApplied;
    assert.deepEqual(
      applied.at(-1)?.users.users.map((u) => u.username),
      ['alice', 'bob', 'carol'],
    );
    assert.deepEqual(applied.at(-1)?.changed, { config: false, users: true });
  });

  it('starts with both files and applies a changed file', async (t) => {
    const files = await plainFiles();
    const { reloader, initial, applied, logs } = await setUp(t, files);
    assert.equal(initial.config.limits.maxRecipients, 30);
    assert.deepEqual(
      initial.users.users.map((u) => u.username),
      ['alice'],
    );

    const configApplied = nextEvent(reloader, 'applied', (e) => e.which === 'config');
    await writeAtomic(files.configPath, configText(40));
    await configApplied;
    assert.equal(applied.length, 1);
    assert.equal(applied[0]?.config.limits.maxRecipients, 40);
    assert.deepEqual(applied[0]?.changed, { config: true, users: false });
    assert.deepEqual(applied[0]?.users, initial.users);

    const usersApplied = nextEvent(reloader, 'applied', (e) => e.which === 'users');
    await writeAtomic(files.usersPath, usersText('alice', 'bob'));
    await usersApplied;
    assert.equal(applied.length, 2);
    assert.deepEqual(
      applied[1]?.users.users.map((u) => u.username),
      ['alice', 'bob'],
    );
    assert.equal(applied[1]?.config.limits.maxRecipients, 40, 'the config in force goes along');
    assert.deepEqual(applied[1]?.changed, { config: false, users: true });
    assert.ok(
      logs.some((l) => l.event === 'config_applied' && l.which === 'users' && l.file === files.usersPath),
    );
  });

  it('starts on the config its caller read, and applies a change made since on the first pass', async (t) => {
    const files = await plainFiles(30);
    const read = await readConfigFile(files.configPath);
    // changed between the caller's read (its logger, its users file) and start()
    await writeFile(files.configPath, configText(45));
    const { reloader, initial, applied } = await setUp(t, files, { debounceMs: 600_000, configText: read });
    assert.equal(initial.config.limits.maxRecipients, 30, 'start() does not read the file again');
    assert.equal(await reloader.reload(), true);
    assert.equal(applied.length, 1);
    assert.equal(applied[0]?.config.limits.maxRecipients, 45);
    assert.deepEqual(applied[0]?.changed, { config: true, users: false });
    assert.equal(await reloader.reload(), false, 'the parsed text is what the next pass compares');
  });

  it('does not re-apply a file rewritten with identical content', async (t) => {
    const files = await plainFiles();
    const { reloader, applied } = await setUp(t, files);

    const checked = nextEvent(reloader, 'checked', (e) => e.trigger === 'watch');
    await writeFile(files.configPath, configText(30));
    assert.deepEqual(await checked, { trigger: 'watch', applied: false });
    assert.equal(await reloader.reload(), false);
    assert.equal(applied.length, 0);
  });

  it('rejects a bad file, keeps the old one in force, then applies a good one', async (t) => {
    const files = await plainFiles();
    const { reloader, applied, logs } = await setUp(t, files);

    const rejected = nextEvent(reloader, 'rejected');
    await writeAtomic(files.configPath, configText(0));
    const { which, error } = await rejected;
    assert.equal(which, 'config');
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'SLUICE_ERR_CONFIG_INVALID');
    assert.deepEqual(error.problems, [
      `${files.configPath}: limits.maxRecipients: got 0, expected an integer >= 1`,
    ]);
    assert.equal(applied.length, 0);

    const configApplied = nextEvent(reloader, 'applied');
    await writeAtomic(files.configPath, configText(45));
    await configApplied;
    assert.equal(applied.length, 1);
    assert.equal(applied[0]?.config.limits.maxRecipients, 45);

    const lines = rejectedLines(logs);
    assert.equal(lines.length, 1, 'one log line per rejected file');
    assert.equal(lines[0]?.level, 40);
    assert.equal(lines[0]?.which, 'config');
    assert.equal(lines[0]?.file, files.configPath);
    assert.equal(lines[0]?.code, 'SLUICE_ERR_CONFIG_INVALID');
    assert.deepEqual(lines[0]?.problems, error.problems);
  });

  it('applies a refused config once the file it names arrives beside it, logging the refusal once', async (t) => {
    const files = await plainFiles();
    const keyPath = join(files.dir, 'key.pem');
    // apply() needs a file the new config names, as the relay's DKIM keys are: kubelet may
    // write the config before the key of the same volume update
    const { reloader, applied, logs } = await setUp(t, files, {
      apply: ({ config }) => {
        if (config.limits.maxRecipients === 40 && !existsSync(keyPath))
          throw new Error(`cannot read ${keyPath}`);
      },
    });
    const rejected = nextEvent(reloader, 'rejected');
    await writeAtomic(files.configPath, configText(40));
    assert.match((await rejected).error.message, /could not be applied: cannot read .*key\.pem/);
    // an unrelated event in the directory: tried again, not logged again
    const checked = nextEvent(reloader, 'checked', (e) => e.trigger === 'watch');
    await writeFile(join(files.dir, 'unrelated'), 'x');
    assert.deepEqual(await checked, { trigger: 'watch', applied: false });

    const configApplied = nextEvent(reloader, 'applied', (e) => e.which === 'config');
    await writeFile(keyPath, 'key');
    await configApplied;
    assert.equal(applied.at(-1)?.config.limits.maxRecipients, 40, 'the unchanged config text, applied now');
    assert.equal(rejectedLines(logs).length, 1, 'one log line for the refusal');
  });

  it('follows a Kubernetes ConfigMap symlink swap, twice in a row', async (t) => {
    const dir = await mkdtemp(join(root, 'k8s-'));
    let current = '';
    const publish = async (version: string, maxRecipients: number) => {
      const data = `..2026_11_28_${version}`;
      await mkdir(join(dir, data));
      await writeFile(join(dir, data, 'config.yaml'), configText(maxRecipients));
      await writeFile(join(dir, data, 'users.yaml'), usersText('alice'));
      if (current === '') {
        await symlink(data, join(dir, '..data'));
        await symlink('..data/config.yaml', join(dir, 'config.yaml'));
        await symlink('..data/users.yaml', join(dir, 'users.yaml'));
      } else {
        // What the kubelet does: a new ..data_tmp link renamed over ..data, then the old data removed.
        await symlink(data, join(dir, '..data_tmp'));
        await rename(join(dir, '..data_tmp'), join(dir, '..data'));
        await rm(join(dir, current), { recursive: true });
      }
      current = data;
    };
    await publish('a', 30);
    const files = { configPath: join(dir, 'config.yaml'), usersPath: join(dir, 'users.yaml') };
    const { reloader, initial, applied } = await setUp(t, files);
    assert.equal(initial.config.limits.maxRecipients, 30);
    assert.equal(initial.config.spoolDir, join(dir, 'spool'), 'relative to the mount, not to ..data');

    for (const [version, maxRecipients] of [
      ['b', 31],
      ['c', 32],
    ] as const) {
      const configApplied = nextEvent(reloader, 'applied', (e) => e.which === 'config');
      await publish(version, maxRecipients);
      await configApplied;
      assert.equal(applied.at(-1)?.config.limits.maxRecipients, maxRecipients);
      assert.deepEqual(
        applied.at(-1)?.changed,
        { config: true, users: false },
        'the users file did not change',
      );
    }
    assert.equal(applied.length, 2);
  });

  it('reloads on demand (SIGHUP): a bad users file holds back a good config file, then both apply', async (t) => {
    const files = await plainFiles();
    // A debounce far beyond the test keeps the watcher out of it: only reload() acts.
    const { reloader, applied, logs } = await setUp(t, files, { debounceMs: 600_000 });

    await writeFile(files.configPath, configText(50));
    await writeFile(files.usersPath, usersText('alice', 'alice'));
    const rejected = nextEvent(reloader, 'rejected');
    assert.equal(await reloader.reload(), false);
    const { which, error } = await rejected;
    assert.equal(which, 'users');
    assert.equal(error.code, 'SLUICE_ERR_DUPLICATE_USER');
    assert.equal(applied.length, 0, 'all or nothing: the valid config change is not applied alone');
    assert.deepEqual(
      logs.filter((l) => l.event === 'config_held').map((l) => l.which),
      ['config'],
    );

    assert.equal(await reloader.reload(), false);
    assert.equal(rejectedLines(logs).length, 2, 'a manual reload reports a still-bad file again');

    await writeFile(files.usersPath, usersText('alice', 'bob'));
    assert.equal(await reloader.reload(), true);
    assert.equal(applied.length, 1);
    assert.deepEqual(applied[0]?.changed, { config: true, users: true });
    assert.equal(applied[0]?.config.limits.maxRecipients, 50);
    assert.deepEqual(
      applied[0]?.users.users.map((u) => u.username),
      ['alice', 'bob'],
    );
  });

  it('rejects a users file with one malformed hash before anything is applied', async (t) => {
    const files = await plainFiles();
    const { reloader, applied } = await setUp(t, files, { debounceMs: 600_000 });
    // r=0 is outside what scrypt accepts: the encoding is right, a parameter is not
    await writeFile(
      files.usersPath,
      `${usersText('alice')}  - username: bob\n    passwordHash: "$scrypt$ln=15,r=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"\n`,
    );
    const rejected = nextEvent(reloader, 'rejected');
    assert.equal(await reloader.reload(), false);
    const { error } = await rejected;
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'SLUICE_ERR_PASSWORD_HASH');
    assert.deepEqual(error.problems, [
      `${files.usersPath}: users[1].passwordHash: user "bob": scrypt parameter r must be an integer from 1 to 32`,
    ]);
    assert.equal(applied.length, 0);
  });

  it('treats an apply() failure as a rejection and retries on reload()', async (t) => {
    const files = await plainFiles();
    let failNext = true;
    const { reloader, applied, logs } = await setUp(t, files, {
      debounceMs: 600_000,
      apply: () => {
        if (failNext) {
          failNext = false;
          throw new Error('port 587 is in use');
        }
      },
    });

    await writeFile(files.configPath, configText(60));
    const rejected = nextEvent(reloader, 'rejected');
    assert.equal(await reloader.reload(), false);
    const { error } = await rejected;
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, [`${files.configPath}: could not be applied: port 587 is in use`]);
    assert.equal(rejectedLines(logs)[0]?.level, 50);

    assert.equal(await reloader.reload(), true);
    assert.equal(applied.length, 1);
    assert.equal(applied[0]?.config.limits.maxRecipients, 60);
  });

  it('refuses to start on a bad file', async (t) => {
    const files = await plainFiles(0);
    const reloader = new Reloader({
      config: { path: files.configPath, load: loadRelayConfig },
      users: { path: files.usersPath, load: loadUsersFile },
      apply: () => assert.fail('nothing to apply'),
      logger: pino({ level: 'silent' }),
    });
    t.after(() => reloader.close());
    await assert.rejects(reloader.start(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'SLUICE_ERR_CONFIG_INVALID');
      return true;
    });
  });
});
