import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadRelayConfig, loadUsersFile, parseConfigText, readUsersSource } from './load.ts';
import { ConfigError } from './validate.ts';

/** The unprivileged user and group (nobody, nogroup) a root test run reads files as. */
const NOBODY = 65534;

const HASH = '$2b$04$gCDE0OjZBnNGGZs4MN7Yf.Xv3KDnKact7IJjxMzHLi.GP21dQDgha';

const YAML_CONFIG = `# Sluice
hostname: relay.example.com
listeners:
  - name: submission
    port: 587
  - name: smtps
    port: 465
    tls: implicit
spoolDir: spool
usersFile: ../secrets/users.yaml
tls:
  certFile: tls/tls.crt
  keyFile: /etc/tls/tls.key
limits:
  maxRecipients: 50
`;

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-load-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the load to fail');
}

describe('loadRelayConfig', () => {
  it('loads YAML, fills defaults and resolves relative paths against the file’s directory', async () => {
    const path = join(dir, 'yaml', 'config.yaml');
    await mkdir(join(dir, 'yaml'));
    await writeFile(path, YAML_CONFIG);
    const config = await loadRelayConfig(path);
    assert.equal(config.hostname, 'relay.example.com');
    assert.equal(config.listeners[1]?.tls, 'implicit');
    assert.equal(config.limits.maxRecipients, 50);
    assert.equal(config.limits.maxMessageBytes, 31457280);
    assert.equal(config.spoolDir, join(dir, 'yaml', 'spool'));
    assert.equal(config.usersFile, join(dir, 'secrets', 'users.yaml'));
    assert.equal(config.tls.certFile, join(dir, 'yaml', 'tls', 'tls.crt'));
    assert.equal(config.tls.keyFile, '/etc/tls/tls.key');
    assert.equal(config.stateDir, undefined);
  });

  it('resolves every *File path, wherever it sits in the config', async () => {
    const path = join(dir, 'yaml', 'files.yaml');
    await writeFile(
      path,
      [
        'listeners: [{ name: a, port: 0 }]',
        'spoolDir: spool',
        'usersFile: users.yaml',
        'admin: { tokenFile: token }',
        'delivery: { mode: smarthost, smarthost: { host: h, passwordFile: pw/smarthost } }',
        'drain: { handoff: { host: peer, port: 587, username: u, passwordFile: pw/handoff } }',
        'state: { backend: redis, redis: { nodes: ["r:6379"], passwordFile: /abs/redis } }',
      ].join('\n'),
    );
    const config = await loadRelayConfig(path);
    assert.equal(config.admin.tokenFile, join(dir, 'yaml', 'token'));
    assert.equal(config.delivery.smarthost?.passwordFile, join(dir, 'yaml', 'pw', 'smarthost'));
    assert.equal(config.drain.handoff?.passwordFile, join(dir, 'yaml', 'pw', 'handoff'));
    assert.equal(config.state.redis?.passwordFile, '/abs/redis');
    assert.equal(config.delivery.smarthost?.host, 'h', 'other strings are left alone');
  });

  it('loads the same config from JSON', async () => {
    const path = join(dir, 'yaml', 'config.json');
    const json = {
      hostname: 'relay.example.com',
      listeners: [
        { name: 'submission', port: 587 },
        { name: 'smtps', port: 465, tls: 'implicit' },
      ],
      spoolDir: 'spool',
      stateDir: './state',
      usersFile: '../secrets/users.yaml',
      tls: { certFile: 'tls/tls.crt', keyFile: '/etc/tls/tls.key' },
      limits: { maxRecipients: 50 },
    };
    await writeFile(path, JSON.stringify(json, null, 2));
    const fromJson = await loadRelayConfig(path);
    const fromYaml = await loadRelayConfig(join(dir, 'yaml', 'config.yaml'));
    const { stateDir, ...rest } = fromJson;
    assert.equal(stateDir, join(dir, 'yaml', 'state'));
    assert.deepEqual(rest, fromYaml);
  });

  it('names the file in every problem', async () => {
    const path = join(dir, 'invalid.yaml');
    await writeFile(path, 'listeners: []\nspoolDir: s\nusersFile: u\nlimits:\n  maxRecipients: 0\n');
    const err = await rejection(loadRelayConfig(path));
    assert.equal(err.code, 'SLUICE_ERR_CONFIG_INVALID');
    assert.deepEqual(err.problems, [
      `${path}: listeners: got [], expected at least 1 item`,
      `${path}: limits.maxRecipients: got 0, expected an integer >= 1`,
    ]);
  });

  it('reports a YAML syntax error with line and column', async () => {
    const path = join(dir, 'broken.yaml');
    await writeFile(path, 'spoolDir: s\nlisteners: [\n  { name: a, port: 25 }\nusersFile: u\n');
    const err = await rejection(loadRelayConfig(path));
    assert.equal(err.code, 'SLUICE_ERR_CONFIG_PARSE');
    assert.deepEqual(err.problems, [
      `${path}:4:1: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    ]);
  });

  it('reports a duplicate key as a parse error', async () => {
    const path = join(dir, 'dup-key.yaml');
    await writeFile(path, 'spoolDir: a\nspoolDir: b\n');
    const err = await rejection(loadRelayConfig(path));
    assert.equal(err.code, 'SLUICE_ERR_CONFIG_PARSE');
    assert.deepEqual(err.problems, [`${path}:2:1: Map keys must be unique`]);
  });

  it('reports a missing file with its path and errno code', async () => {
    const path = join(dir, 'nope.yaml');
    const err = await rejection(loadRelayConfig(path));
    assert.equal(err.code, 'SLUICE_ERR_CONFIG_READ');
    assert.equal(err.message, `${path}: cannot read the file (ENOENT)`);
  });

  it('reports a directory given as the file', async () => {
    const err = await rejection(loadRelayConfig(dir));
    assert.equal(err.code, 'SLUICE_ERR_CONFIG_READ');
    assert.equal(err.message, `${dir}: cannot read the file (EISDIR)`);
  });

  it('reports a file without read permission', async () => {
    const path = join(dir, 'secret.yaml');
    await writeFile(path, YAML_CONFIG);
    await chmod(path, 0o000);
    if (process.getuid?.() !== 0) {
      const err = await rejection(loadRelayConfig(path));
      assert.equal(err.code, 'SLUICE_ERR_CONFIG_READ');
      assert.equal(err.message, `${path}: cannot read the file (EACCES)`);
      return;
    }
    // root reads files whatever their mode: a child imports the loader as root (the
    // checkout may be closed to others), then becomes nobody and loads the file
    await chmod(dir, 0o755);
    const load = new URL('./load.ts', import.meta.url).href;
    const script = `const { loadRelayConfig } = await import(${JSON.stringify(load)});
      process.setgid(${NOBODY});
      process.setuid(${NOBODY});
      await loadRelayConfig(${JSON.stringify(path)}).then(
        () => console.log('{}'),
        (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
      );`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), {
      code: 'SLUICE_ERR_CONFIG_READ',
      message: `${path}: cannot read the file (EACCES)`,
    });
  });
});

describe('loadUsersFile', () => {
  it('loads users and fills defaults', async () => {
    const path = join(dir, 'users.yaml');
    await writeFile(
      path,
      `users:\n  - username: alice\n    passwordHash: "${HASH}"\n    suspended: true\n  - username: bob\n    passwordHash: "${HASH}"\n`,
    );
    const users = await loadUsersFile(path);
    assert.deepEqual(
      users.users.map((u) => [u.username, u.suspended]),
      [
        ['alice', true],
        ['bob', false],
      ],
    );
  });

  it('rejects a duplicate username', async () => {
    const path = join(dir, 'users-dup.json');
    const user = { username: 'alice', passwordHash: HASH };
    await writeFile(path, JSON.stringify({ users: [user, user] }));
    const err = await rejection(loadUsersFile(path));
    assert.equal(err.code, 'SLUICE_ERR_DUPLICATE_USER');
    assert.deepEqual(err.problems, [`${path}: users[1].username: "alice" is already used by users[0]`]);
  });
});

describe('loadUsersFile on a directory of shards', () => {
  const shard = (...names: string[]) =>
    JSON.stringify({ users: names.map((username) => ({ username, passwordHash: HASH })) });

  it('merges every *.json and *.yaml file and skips dot entries', async () => {
    const shards = join(dir, 'shards');
    await mkdir(join(shards, '..data'), { recursive: true });
    await writeFile(join(shards, 'users-00.json'), shard('alice', 'bob'));
    await writeFile(join(shards, 'users-01.json'), shard('carol'));
    await writeFile(join(shards, 'legacy.yaml'), `users:\n  - username: dave\n    passwordHash: "${HASH}"\n`);
    await writeFile(join(shards, '..data', 'users-02.json'), shard('mallory'));
    await writeFile(join(shards, 'notes.txt'), 'not a shard');
    const users = await loadUsersFile(shards);
    assert.deepEqual(users.users.map((u) => u.username).sort(), ['alice', 'bob', 'carol', 'dave']);
    assert.equal(users.users[0]?.suspended, false, 'defaults are filled in each shard');
  });

  it('sees a change to one shard in what a reload compares', async () => {
    const shards = join(dir, 'shards-source');
    await mkdir(shards);
    await writeFile(join(shards, 'users-00.json'), shard('alice'));
    await writeFile(join(shards, 'users-01.json'), shard('bob'));
    const before = await readUsersSource(shards);
    await writeFile(join(shards, 'users-01.json'), shard('bob', 'carol'));
    const changed = await readUsersSource(shards);
    assert.notEqual(changed, before);
    assert.deepEqual(
      (await loadUsersFile(shards)).users.map((u) => u.username),
      ['alice', 'bob', 'carol'],
    );
  });

  it('names both shards of a username listed twice, and the shard of an invalid user', async () => {
    const shards = join(dir, 'shards-dup');
    await mkdir(shards);
    await writeFile(join(shards, 'users-00.json'), shard('alice'));
    await writeFile(join(shards, 'users-01.json'), shard('alice'));
    const dup = await rejection(loadUsersFile(shards));
    assert.equal(dup.code, 'SLUICE_ERR_CONFIG_INVALID');
    assert.deepEqual(dup.problems, [
      `${join(shards, 'users-01.json')}: user "alice" is already listed in ${join(shards, 'users-00.json')}`,
    ]);
    await writeFile(join(shards, 'users-01.json'), '{"users": [{"username": "bob"}]}');
    const invalid = await rejection(loadUsersFile(shards));
    assert.deepEqual(invalid.problems, [
      `${join(shards, 'users-01.json')}: users[0].passwordHash: required field missing`,
    ]);
  });
});

describe('parseConfigText', () => {
  it('parses JSON and YAML alike', () => {
    assert.deepEqual(parseConfigText('{"a": [1, 2]}', 'x.json'), { a: [1, 2] });
    assert.deepEqual(parseConfigText('a:\n  - 1\n  - 2\n', 'x.yaml'), { a: [1, 2] });
  });

  it('refuses a file with two YAML documents', () => {
    assert.throws(
      () => parseConfigText('a: 1\n---\nb: 2\n', 'x.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'SLUICE_ERR_CONFIG_PARSE');
        assert.deepEqual(err.problems, [
          'x.yaml:2:1: the file holds more than one YAML document (a second ---)',
        ]);
        return true;
      },
    );
  });

  it('refuses an alias bomb instead of expanding it', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) {
      const prev = String.fromCharCode(96 + i);
      const next = String.fromCharCode(97 + i);
      lines.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    assert.throws(
      () => parseConfigText(lines.join('\n'), 'bomb.yaml'),
      (err: unknown) => err instanceof ConfigError && err.code === 'SLUICE_ERR_CONFIG_PARSE',
    );
  });
});
