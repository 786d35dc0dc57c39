// Reading the config and users files from disk: read, parse (YAML or JSON), validate,
// and make the config's relative paths absolute.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { RelayConfig, UsersFile } from './schema.ts';
import { ConfigError, validateRelayConfig, validateUsersFile } from './validate.ts';

/** Reads and validates the relay config; relative paths in it are resolved against its directory. */
export async function loadRelayConfig(path: string): Promise<RelayConfig> {
  const text = await readConfigFile(path);
  const config = validateRelayConfig(parseConfigText(text, path), path);
  return resolveConfigPaths(config, dirname(path));
}

/** Reads and validates a users file. */
export async function loadUsersFile(path: string): Promise<UsersFile> {
  const text = await readConfigFile(path);
  return validateUsersFile(parseConfigText(text, path), path);
}

/** The file's text, or SLUICE_ERR_CONFIG_READ naming the path and the errno code. */
export async function readConfigFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err: unknown) {
    const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'EIO';
    throw new ConfigError('SLUICE_ERR_CONFIG_READ', path, [`${path}: cannot read the file (${code})`], {
      cause: err,
    });
  }
}

/** Parses YAML or JSON (JSON is YAML); syntax errors become SLUICE_ERR_CONFIG_PARSE with line:column. */
export function parseConfigText(text: string, source: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      const message =
        e.code === 'MULTIPLE_DOCS' ? 'the file holds more than one YAML document (a second ---)' : e.message;
      return `${source}:${line}:${col}: ${message}`;
    });
    throw new ConfigError('SLUICE_ERR_CONFIG_PARSE', source, problems);
  }
  try {
    return doc.toJS();
  } catch (err: unknown) {
    // toJS refuses alias bombs (a billion laughs) rather than expanding them.
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError('SLUICE_ERR_CONFIG_PARSE', source, [`${source}: ${message}`], { cause: err });
  }
}

/** Every path in the config (fields named *File or *Dir) made absolute, relative to baseDir. */
export function resolveConfigPaths(config: RelayConfig, baseDir: string): RelayConfig {
  const walk = (value: unknown, key: string): unknown => {
    if (typeof value === 'string') return /(File|Dir)$/.test(key) ? resolve(baseDir, value) : value;
    if (Array.isArray(value)) return value.map((v) => walk(v, ''));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    return value;
  };
  return walk(config, '') as RelayConfig;
}
