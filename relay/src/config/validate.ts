// Schema validation of the config and users files, with one readable line per problem:
// `<file>: <field path>: got <value>, expected <what>`. Secrets are never echoed.
import { isIP } from 'node:net';
import { Ajv, type AnySchemaObject, type ErrorObject } from 'ajv';
import { assertSupportedHash } from '../auth/password.ts';
import { type ErrorCode, isSluiceError, SluiceError } from '../errors.ts';
import { TrustedNetworks } from '../net/trusted-networks.ts';
import { type RelayConfig, RelayConfigSchema, type UsersFile, UsersFileSchema } from './schema.ts';

/** A config-file failure; `problems` holds one human-readable line per problem, for structured logs. */
export class ConfigError extends SluiceError {
  readonly source: string;
  readonly problems: readonly string[];
  constructor(code: ErrorCode, source: string, problems: readonly string[], options?: ErrorOptions) {
    const head = problems.length === 1 ? '' : `${source}: ${problems.length} problems\n`;
    super(code, head + problems.join('\n'), options);
    this.name = 'ConfigError';
    this.source = source;
    this.problems = problems;
  }
}

// strict mode stays on: TypeBox 0.34 keeps its Kind marker under a Symbol, which ajv never
// sees, so the schemas use only standard keywords and a typo in them fails at startup.
// verbose puts the failing value and its schema on each error, which the messages need.
const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: true, verbose: true });
const relayConfigValidator = ajv.compile<RelayConfig>(RelayConfigSchema);
const usersFileValidator = ajv.compile<UsersFile>(UsersFileSchema);

/** Validates a parsed config file; returns a copy with every default filled in. */
export function validateRelayConfig(data: unknown, source: string): RelayConfig {
  const copy = structuredClone(data);
  if (!relayConfigValidator(copy)) {
    throw new ConfigError(
      'SLUICE_ERR_CONFIG_INVALID',
      source,
      describeErrors(relayConfigValidator.errors, copy, source),
    );
  }
  const problems = [
    ...duplicatesOf(
      copy.listeners,
      (l) => l.name,
      (i, first, name) =>
        `${source}: listeners[${i}].name: ${JSON.stringify(name)} is already used by listeners[${first}]`,
    ),
    ...duplicatesOf(
      copy.listeners,
      (l) => `${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`,
      (i, first, key) =>
        key.endsWith(':0')
          ? undefined
          : `${source}: listeners[${i}].port: ${key} is already used by listeners[${first}]`,
    ),
  ];
  copy.drain.handoff?.fromNetworks.forEach((cidr, i) => {
    const problem = cidrProblem(cidr);
    if (problem)
      problems.push(`${source}: drain.handoff.fromNetworks[${i}]: got ${JSON.stringify(cidr)}, ${problem}`);
  });
  copy.delivery.allowedNetworks.forEach((cidr, i) => {
    const problem = cidrProblem(cidr);
    if (problem)
      problems.push(`${source}: delivery.allowedNetworks[${i}]: got ${JSON.stringify(cidr)}, ${problem}`);
  });
  copy.delivery.egressAddresses.forEach((address, i) => {
    if (isIP(address) === 0)
      problems.push(
        `${source}: delivery.egressAddresses[${i}]: got ${JSON.stringify(address)}, expected an IPv4 or IPv6 address`,
      );
  });
  if (copy.state.backend === 'redis' && !copy.state.redis) {
    problems.push(`${source}: state.redis: required field missing (state.backend is redis)`);
  }
  if (copy.delivery.mode === 'smarthost' && !copy.delivery.smarthost) {
    problems.push(`${source}: delivery.smarthost: required field missing (delivery.mode is smarthost)`);
  }
  if (copy.delivery.retry.minBackoffSeconds > copy.delivery.retry.maxBackoffSeconds) {
    problems.push(
      `${source}: delivery.retry.minBackoffSeconds: got ${copy.delivery.retry.minBackoffSeconds}, expected at most delivery.retry.maxBackoffSeconds (${copy.delivery.retry.maxBackoffSeconds})`,
    );
  }
  if (copy.dnsbl.minTtlSeconds > copy.dnsbl.maxTtlSeconds) {
    problems.push(
      `${source}: dnsbl.minTtlSeconds: got ${copy.dnsbl.minTtlSeconds}, expected at most dnsbl.maxTtlSeconds (${copy.dnsbl.maxTtlSeconds})`,
    );
  }
  if (problems.length > 0) throw new ConfigError('SLUICE_ERR_CONFIG_INVALID', source, problems);
  return copy;
}

/** Why a CIDR the schema's pattern let through is still no network (e.g. 10.0.0.0/33), or undefined. */
function cidrProblem(cidr: string): string | undefined {
  try {
    new TrustedNetworks([cidr]);
    return undefined;
  } catch (err: unknown) {
    if (!isSluiceError(err)) throw err;
    return 'expected an IP address or CIDR network such as 10.0.0.0/8';
  }
}

/** One problem line per item whose key an earlier item already has. */
function duplicatesOf<T>(
  items: readonly T[],
  key: (item: T) => string,
  describe: (index: number, first: number, key: string) => string | undefined,
): string[] {
  const firstIndex = new Map<string, number>();
  const problems: string[] = [];
  items.forEach((item, i) => {
    const k = key(item);
    const first = firstIndex.get(k);
    if (first === undefined) firstIndex.set(k, i);
    else {
      const line = describe(i, first, k);
      if (line) problems.push(line);
    }
  });
  return problems;
}

/** Validates a parsed users file; returns a copy with every default filled in. */
export function validateUsersFile(data: unknown, source: string): UsersFile {
  const copy = structuredClone(data);
  if (!usersFileValidator(copy)) {
    throw new ConfigError(
      'SLUICE_ERR_CONFIG_INVALID',
      source,
      describeErrors(usersFileValidator.errors, copy, source),
    );
  }
  const duplicates = duplicatesOf(
    copy.users,
    (u) => u.username,
    (i, first, name) =>
      `${source}: users[${i}].username: ${JSON.stringify(name)} is already used by users[${first}]`,
  );
  const hashes = hashProblems(copy.users, source);
  if (hashes.length > 0) {
    throw new ConfigError('SLUICE_ERR_PASSWORD_HASH', source, [...duplicates, ...hashes]);
  }
  if (duplicates.length > 0) throw new ConfigError('SLUICE_ERR_DUPLICATE_USER', source, duplicates);
  return copy;
}

/**
 * One line per user whose hash the relay could not verify (malformed encoding, parameters
 * out of the bounds password.ts accepts, a scheme this process lacks). Checked here, with
 * the schema, so that a file with one bad hash is refused before any of it takes effect.
 * The hash itself is never echoed.
 */
function hashProblems(users: UsersFile['users'], source: string): string[] {
  const problems: string[] = [];
  users.forEach((user, i) => {
    try {
      assertSupportedHash(user.passwordHash);
    } catch (err: unknown) {
      if (!isSluiceError(err, 'SLUICE_ERR_PASSWORD_HASH')) throw err;
      problems.push(
        `${source}: users[${i}].passwordHash: user ${JSON.stringify(user.username)}: ${err.message}`,
      );
    }
  });
  return problems;
}

const SENSITIVE_NAME = /password|passwd|passphrase|^pass$|hash|secret|token/i;
const MAX_VALUE_CHARS = 60;

// Patterns from schema.ts described in words; any other pattern is shown as a regex.
const PATTERN_WORDS: Record<string, string> = {
  '^\\$(scrypt|argon2id|2a|2b|2y)\\$': 'a scrypt/argon2id/bcrypt hash',
  '^[a-z][a-z0-9-]{0,30}$':
    'a lowercase name of at most 31 letters, digits and dashes, starting with a letter',
  '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$': 'an IP address or CIDR network such as 10.0.0.0/8',
  '^[A-Za-z0-9_-]{1,16}$': 'a file extension without the dot (1-16 letters, digits, _ or -)',
  '^[^\\s:]+$': 'a name without spaces or colons',
  '^[^\\s<>]+$': 'an address or domain without spaces or angle brackets',
  '^[!-;=?A-~]+@[!-;=?A-~]+$': 'an ASCII address such as postmaster@example.net',
};

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null',
};

/** Turns ajv's errors into one line per problem (union branches collapsed into one line). */
function describeErrors(
  errors: readonly ErrorObject[] | null | undefined,
  data: unknown,
  source: string,
): string[] {
  const all = errors ?? [];
  // ajv reports every failed branch of a union before the union itself; the union's line covers them.
  const unions = all.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  const covered = (e: ErrorObject): boolean =>
    unions.some((u) => u !== e && e.schemaPath.startsWith(`${u.schemaPath}/`));
  const lines = new Set<string>();
  for (const e of all) if (!covered(e)) lines.add(describeError(e, data, source));
  return [...lines];
}

function describeError(e: ErrorObject, root: unknown, source: string): string {
  const segments = pointerSegments(e.instancePath);
  const params = e.params as Record<string, unknown>;
  if (e.keyword === 'required') {
    return line(
      source,
      fieldPath(root, [...segments, String(params.missingProperty)]),
      'required field missing',
    );
  }
  if (e.keyword === 'additionalProperties') {
    const name = String(params.additionalProperty);
    const known = Object.keys((e.parentSchema?.properties as object | undefined) ?? {});
    const guess = suggest(name, known);
    const hint = guess === undefined ? '' : ` (did you mean ${guess}?)`;
    return line(source, fieldPath(root, [...segments, name]), `unknown field${hint}`);
  }
  const expected = `expected ${expectation(e, params)}`;
  const sensitive = segments.some((s) => SENSITIVE_NAME.test(s));
  // A secret's value is left out altogether; the path and expectation say enough.
  const detail = sensitive ? expected : `got ${renderValue(e.data)}, ${expected}`;
  return line(source, fieldPath(root, segments), detail);
}

function line(source: string, path: string, detail: string): string {
  return path === '' ? `${source}: ${detail}` : `${source}: ${path}: ${detail}`;
}

function expectation(e: ErrorObject, params: Record<string, unknown>): string {
  const parent = e.parentSchema ?? {};
  switch (e.keyword) {
    case 'type':
      return typeWords(params.type);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${typeWords(parent.type ?? 'number')} ${String(params.comparison)} ${String(params.limit)}`;
    case 'minLength':
      return params.limit === 1
        ? 'a non-empty string'
        : `a string of at least ${String(params.limit)} characters`;
    case 'maxLength':
      return `a string of at most ${String(params.limit)} characters`;
    case 'pattern': {
      const pattern = String(params.pattern);
      return PATTERN_WORDS[pattern] ?? `a string matching /${pattern}/`;
    }
    case 'minItems':
      return `at least ${plural(Number(params.limit), 'item')}`;
    case 'maxItems':
      return `at most ${plural(Number(params.limit), 'item')}`;
    case 'uniqueItems':
      return `no duplicates (items ${String(params.j)} and ${String(params.i)} are the same)`;
    case 'const':
      return renderValue(params.allowedValue);
    case 'enum':
      return `one of ${(params.allowedValues as unknown[]).map(renderValue).join(', ')}`;
    case 'anyOf':
    case 'oneOf':
      return `one of ${(e.schema as AnySchemaObject[]).map(describeSchema).join(', ')}`;
    default:
      return (e.message ?? `to satisfy ${e.keyword}`).replace(/^must (be )?/, '');
  }
}

function describeSchema(schema: AnySchemaObject): string {
  if ('const' in schema) return renderValue(schema.const);
  if (schema.type !== undefined) return typeWords(schema.type);
  return 'a value of another shape';
}

function typeWords(type: unknown): string {
  const types = Array.isArray(type) ? type : String(type).split(',');
  return types.map((t) => TYPE_WORDS[String(t)] ?? String(t)).join(' or ');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

/** `listeners[1].port`: walks the data so a numeric key is an index only where the value is a list. */
function fieldPath(root: unknown, segments: readonly string[]): string {
  let out = '';
  let node: unknown = root;
  for (const segment of segments) {
    if (Array.isArray(node)) {
      out += `[${segment}]`;
      node = node[Number(segment)];
      continue;
    }
    out += /^[A-Za-z_$][\w$-]*$/.test(segment)
      ? `${out === '' ? '' : '.'}${segment}`
      : `[${JSON.stringify(segment)}]`;
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return out;
}

/** JSON of a value found in the file, secrets masked, cut to about 60 characters. */
function renderValue(value: unknown): string {
  let text: string;
  if (typeof value === 'number' && !Number.isFinite(value)) text = String(value);
  else if (value === undefined) text = 'nothing';
  else {
    try {
      text =
        JSON.stringify(value, (key, v: unknown) =>
          key !== '' && SENSITIVE_NAME.test(key) ? '<redacted>' : v,
        ) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

/** The known name closest to a misspelt one, if any is close enough to be a plausible typo. */
function suggest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 4)) + 1;
  for (const candidate of known) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
