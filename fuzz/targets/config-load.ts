// The config and users file loaders (relay/src/config/load.ts + validate.ts: YAML/JSON
// parse, schema validation with defaults, cross-field rules, path resolution) on any file
// content an operator, or a bad ConfigMap, could hand the relay. Checks: the only errors
// are ConfigErrors with a config code and at least one problem line naming the file; no
// secret value from the file appears in the error; an accepted config has absolute paths
// and validates again to itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { loadRelayConfig, loadUsersFile, parseConfigText } from '../../relay/src/config/load.ts';
import { ConfigError, validateRelayConfig, validateUsersFile } from '../../relay/src/config/validate.ts';
import type { FuzzTarget } from '../engine/fuzz-loop.ts';
import { CheckFailed, check } from './check.ts';

const CODES = new Set([
  'SLUICE_ERR_CONFIG_PARSE',
  'SLUICE_ERR_CONFIG_INVALID',
  'SLUICE_ERR_DUPLICATE_USER',
  'SLUICE_ERR_PASSWORD_HASH',
]);
const SENSITIVE_NAME = /password|passwd|passphrase|^pass$|hash|secret|token/i;
/** Shorter values could appear in a message by coincidence (a field name, a number). */
const SECRET_MIN_CHARS = 8;

let dir = '';
let path = '';

/** String values under keys that name a secret, anywhere in the parsed file. */
function secrets(value: unknown, key = '', out: string[] = []): string[] {
  if (typeof value === 'string' && SENSITIVE_NAME.test(key) && value.length >= SECRET_MIN_CHARS)
    out.push(value);
  else if (Array.isArray(value)) for (const v of value) secrets(v, key, out);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) secrets(v, k, out);
  }
  return out;
}

function checkError(err: unknown, text: string): void {
  if (!(err instanceof ConfigError)) {
    throw new CheckFailed(`loading failed with something else than a ConfigError: ${String(err)}`);
  }
  check(CODES.has(err.code), `ConfigError with code ${err.code}`);
  check(err.problems.length > 0, 'ConfigError without a problem line');
  for (const line of err.problems) check(line.startsWith(path), `a problem line that names no file: ${line}`);
  let parsed: unknown;
  try {
    parsed = parseConfigText(text, path);
  } catch {
    return;
  }
  for (const secret of secrets(parsed)) {
    check(!err.message.includes(secret), `the error shows a secret value: ${err.message}`);
  }
}

export const target: FuzzTarget = {
  name: 'config-load',
  maxLength: 4096,
  dictionary: [
    '\n',
    '\n  ',
    '\n  - ',
    ': ',
    '---\n',
    '&a ',
    '*a',
    '<<: *a',
    '!!binary ',
    '!!str ',
    '{',
    '}',
    '[',
    ']',
    '"',
    "'",
    '~',
    'null',
    '.inf',
    '0x',
    '1e999',
    '__proto__',
    'constructor',
    'listeners:',
    'tls: implicit',
    'proxyProtocol: true',
    'trustedProxies:',
    'state:',
    'backend: redis',
    'delivery:',
    'mode: smarthost',
    'passwordFile: ',
    'passwordHash: ',
    'username: ',
    'users:',
    '$scrypt$',
    'retry:',
    'minBackoffSeconds: ',
  ],
  async setup() {
    dir = mkdtempSync(join(tmpdir(), 'sluice-fuzz-config-'));
    path = join(dir, 'config.yaml');
  },
  async teardown() {
    rmSync(dir, { recursive: true, force: true });
  },
  async run(input, probe) {
    await writeFile(path, input);
    const text = input.toString('utf8');
    // the loaders' work is synchronous once the file is read; the probe times from the read on
    probe.begin();
    try {
      const config = await loadRelayConfig(path);
      probe.end();
      check(
        isAbsolute(config.spoolDir) && isAbsolute(config.usersFile),
        'a relative path in a loaded config',
      );
      check(
        isDeepStrictEqual(validateRelayConfig(config, path), config),
        'a loaded config does not validate to itself',
      );
    } catch (err: unknown) {
      probe.end();
      if (err instanceof CheckFailed) throw err;
      checkError(err, text);
    }
    probe.begin();
    try {
      const users = await loadUsersFile(path);
      probe.end();
      check(
        isDeepStrictEqual(validateUsersFile(users, path), users),
        'a loaded users file does not validate to itself',
      );
    } catch (err: unknown) {
      probe.end();
      if (err instanceof CheckFailed) throw err;
      checkError(err, text);
    }
  },
};
