// Every number a config or users file can hold is bounded on both sides, by what the
// runtime honours. A new numeric field without bounds fails here.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayConfigSchema, TIMER_MAX_MS, TIMER_MAX_SECONDS, UsersFileSchema } from './schema.ts';
import { ConfigError, validateRelayConfig } from './validate.ts';

type Node = Record<string, unknown>;
interface NumberField {
  path: string;
  key: string;
  node: Node;
}

/** Every integer or number schema under `node`, with its field path (`listeners[].port`). */
function numericFields(node: Node, path = '', key = ''): NumberField[] {
  const out: NumberField[] = [];
  const types = Array.isArray(node.type) ? node.type : [node.type];
  if (types.includes('integer') || types.includes('number')) out.push({ path, key, node });
  const properties = (node.properties ?? {}) as Record<string, Node>;
  for (const [k, child] of Object.entries(properties)) {
    out.push(...numericFields(child, path === '' ? k : `${path}.${k}`, k));
  }
  if (node.items && typeof node.items === 'object')
    out.push(...numericFields(node.items as Node, `${path}[]`, key));
  if (node.additionalProperties && typeof node.additionalProperties === 'object') {
    out.push(...numericFields(node.additionalProperties as Node, `${path}{}`, key));
  }
  for (const keyword of ['anyOf', 'oneOf', 'allOf']) {
    for (const branch of (node[keyword] ?? []) as Node[]) out.push(...numericFields(branch, path, key));
  }
  return out;
}

const lower = (n: Node) => (n.minimum ?? n.exclusiveMinimum) as number | undefined;
const upper = (n: Node) => (n.maximum ?? n.exclusiveMaximum) as number | undefined;

// Durations in seconds that are compared with timestamps or sent to Redis as TTLs, never
// handed to setTimeout, may exceed a timer's range (a 30-day rate window is a real need).
const NOT_TIMERS = new Set([
  'rateLimits.perUser[].windowSeconds',
  'rateLimits.perIp[].windowSeconds',
  'users[].rateLimits[].windowSeconds',
  'abuse.suspendSeconds',
  'delivery.retry.queueLifetimeSeconds',
  'delivery.retry.delayWarningSeconds',
  // an expiry time kept with each entry in the shared state, never a timer
  'suppression.ttlSeconds',
]);

const relayFields = numericFields(RelayConfigSchema as unknown as Node);
const userFields = numericFields(UsersFileSchema as unknown as Node);
const all = [...relayFields, ...userFields];

describe('numeric bounds of the config and users files', () => {
  it('finds the numeric fields (the walk itself works)', () => {
    assert.ok(relayFields.length >= 40, `only ${relayFields.length} numeric fields found`);
    assert.ok(relayFields.some((f) => f.path === 'listeners[].port'));
    assert.ok(userFields.some((f) => f.path === 'users[].rateLimits[].limit'));
  });

  it('gives every number and integer a minimum and a maximum', () => {
    const unbounded = all
      .filter((f) => lower(f.node) === undefined || upper(f.node) === undefined)
      .map((f) => f.path);
    assert.deepEqual(unbounded, []);
    for (const f of all) assert.ok((lower(f.node) ?? 0) <= (upper(f.node) ?? 0), `${f.path}: min > max`);
  });

  it('keeps ports within 0-65535 and counts at 0 or more', () => {
    for (const f of all) {
      assert.ok((lower(f.node) ?? -1) >= 0, `${f.path} accepts a negative number`);
      if (/port$/i.test(f.key))
        assert.ok((upper(f.node) ?? 0) <= 65535, `${f.path} accepts a port above 65535`);
    }
  });

  it('keeps every duration a timer waits for within 2^31-1 ms', () => {
    for (const f of all) {
      const max = upper(f.node) ?? Number.POSITIVE_INFINITY;
      if (f.key.endsWith('Ms')) assert.ok(max <= TIMER_MAX_MS, `${f.path}: ${max} ms overflows a timer`);
      if (f.key.endsWith('Seconds') && !NOT_TIMERS.has(f.path)) {
        assert.ok(max <= TIMER_MAX_SECONDS, `${f.path}: ${max} s overflows a timer`);
      }
    }
    for (const path of NOT_TIMERS)
      assert.ok(
        all.some((f) => f.path === path),
        `${path} no longer exists`,
      );
  });
});

describe('values the runtime could not honour', () => {
  const base = { listeners: [{ name: 'submission', port: 587 }], spoolDir: 's', usersFile: 'u' };
  function problems(extra: Record<string, unknown>): readonly string[] {
    try {
      validateRelayConfig({ ...base, ...extra }, 'config.yaml');
    } catch (err: unknown) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  }

  it('refuses a 3,000,000 s timeout (Node would fire it after 1 ms), naming the field and the bound', () => {
    assert.deepEqual(problems({ delivery: { connectTimeoutSeconds: 3_000_000 } }), [
      'config.yaml: delivery.connectTimeoutSeconds: got 3000000, expected an integer <= 600',
    ]);
    assert.deepEqual(problems({ drain: { deadlineSeconds: 3_000_000 } }), [
      'config.yaml: drain.deadlineSeconds: got 3000000, expected an integer <= 86400',
    ]);
    assert.deepEqual(
      problems({
        state: { backend: 'redis', redis: { nodes: ['r:6379'], commandTimeoutMs: 3_000_000_000 } },
      }),
      ['config.yaml: state.redis.commandTimeoutMs: got 3000000000, expected an integer <= 60000'],
    );
  });

  it('refuses counts beyond what they can mean', () => {
    assert.deepEqual(problems({ limits: { maxConnections: 1e12 } }), [
      'config.yaml: limits.maxConnections: got 1000000000000, expected an integer <= 1000000',
    ]);
    assert.deepEqual(problems({ dnsbl: { maxTtlSeconds: 1e9 } }), [
      'config.yaml: dnsbl.maxTtlSeconds: got 1000000000, expected an integer <= 604800',
    ]);
  });
});
