import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { ConfigError, validateRelayConfig, validateUsersFile } from './validate.ts';

const HASH = '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA';

function minimalConfig(): Record<string, unknown> {
  return {
    listeners: [{ name: 'submission', port: 587 }],
    spoolDir: '/var/spool/sluice',
    usersFile: 'users.yaml',
  };
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(isSluiceError(err, 'SLUICE_ERR_CONFIG_INVALID'), `unexpected code ${err.code}`);
    for (const problem of err.problems)
      assert.ok(err.message.includes(problem), 'message lists every problem');
    return err.problems;
  }
  assert.fail('expected validation to fail');
}

function withLimits(limits: Record<string, unknown>): Record<string, unknown> {
  return { ...minimalConfig(), limits };
}

describe('validateRelayConfig', () => {
  it('fills in the defaults', () => {
    const config = validateRelayConfig(minimalConfig(), 'config.yaml');
    assert.equal(config.limits.maxRecipients, 30);
    assert.equal(config.limits.recipientOverflow, 'reject');
    assert.equal(config.limits.maxMessageBytes, 31457280);
    assert.ok(config.attachments.blockedExtensions.includes('exe'));
    assert.equal(config.hostname, 'localhost');
    assert.deepEqual(config.auth.methods, ['PLAIN', 'LOGIN']);
    assert.equal(config.listeners[0]?.tls, 'starttls');
    assert.equal(config.listeners[0]?.address, '::');
    assert.equal(config.admin.port, 9587);
    assert.equal(config.log.level, 'info');
  });

  it('leaves the caller’s object alone and does not share default arrays between results', () => {
    const input = minimalConfig();
    const a = validateRelayConfig(input, 'config.yaml');
    const b = validateRelayConfig(input, 'config.yaml');
    assert.equal(input.limits, undefined);
    a.attachments.blockedExtensions.push('zip');
    assert.ok(!b.attachments.blockedExtensions.includes('zip'));
  });

  it('keeps values that are given', () => {
    const config = validateRelayConfig(
      withLimits({ maxRecipients: 100, recipientOverflow: 'truncate' }),
      'c',
    );
    assert.equal(config.limits.maxRecipients, 100);
    assert.equal(config.limits.recipientOverflow, 'truncate');
  });

  it('reports a number out of range', () => {
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(withLimits({ maxRecipients: 0 }), 'config.yaml')),
      ['config.yaml: limits.maxRecipients: got 0, expected an integer >= 1'],
    );
  });

  it('takes a postmaster address and names one that is not an ASCII address', () => {
    const ok = validateRelayConfig({ ...minimalConfig(), postmaster: 'hostmaster@example.net' }, 'c');
    assert.equal(ok.postmaster, 'hostmaster@example.net');
    for (const bad of [
      'postmaster',
      'a b@example.net',
      '<pm@example.net>',
      'pm@ex@ample.net',
      'jörg@example.net',
    ]) {
      assert.deepEqual(
        problemsOf(() => validateRelayConfig({ ...minimalConfig(), postmaster: bad }, 'config.yaml')),
        [
          `config.yaml: postmaster: got ${JSON.stringify(bad)}, expected an ASCII address such as postmaster@example.net`,
        ],
      );
    }
  });

  it('collapses a union of literals into one line', () => {
    const config = { ...minimalConfig(), listeners: [{ name: 'submission', port: 587, tls: 'startls' }] };
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(config, 'config.yaml')),
      ['config.yaml: listeners[0].tls: got "startls", expected one of "starttls", "implicit", "none"'],
    );
  });

  it('names an unknown field and suggests the closest known one', () => {
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(withLimits({ maxRecipent: 10 }), 'config.yaml')),
      ['config.yaml: limits.maxRecipent: unknown field (did you mean maxRecipients?)'],
    );
  });

  it('suggests nothing when no known field is close', () => {
    assert.deepEqual(
      problemsOf(() => validateRelayConfig({ ...minimalConfig(), colour: 'blue' }, 'config.yaml')),
      ['config.yaml: colour: unknown field'],
    );
  });

  it('reports a missing required field', () => {
    const { spoolDir: _omitted, ...config } = minimalConfig();
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(config, 'config.yaml')),
      ['config.yaml: spoolDir: required field missing'],
    );
  });

  it('lists every problem, with array indexes in the path', () => {
    const config = {
      listeners: [
        { name: 'submission', port: 587 },
        { name: 'smtps', port: 70000, tls: 5 },
      ],
      usersFile: 'users.yaml',
      limits: { maxRecipients: 0 },
      auth: { methods: ['PLAIN', 'CRAM-MD5'] },
    };
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(config, 'config.yaml')),
      [
        'config.yaml: spoolDir: required field missing',
        'config.yaml: listeners[1].port: got 70000, expected an integer <= 65535',
        'config.yaml: listeners[1].tls: got 5, expected one of "starttls", "implicit", "none"',
        'config.yaml: auth.methods[1]: got "CRAM-MD5", expected one of "PLAIN", "LOGIN"',
        'config.yaml: limits.maxRecipients: got 0, expected an integer >= 1',
      ],
    );
  });

  it('reports a wrong type and a document that is not a mapping', () => {
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(withLimits({ maxRecipients: '30' }), 'config.yaml')),
      ['config.yaml: limits.maxRecipients: got "30", expected an integer'],
    );
    assert.deepEqual(
      problemsOf(() => validateRelayConfig(null, 'config.yaml')),
      ['config.yaml: got null, expected an object'],
    );
  });

  it('truncates a long value to about 60 characters', () => {
    const [problem] = problemsOf(() =>
      validateRelayConfig({ ...minimalConfig(), hostname: 'x'.repeat(300) }, 'c'),
    );
    assert.equal(
      problem,
      `c: hostname: got "${'x'.repeat(58)}…, expected a string of at most 253 characters`,
    );
  });
});

describe('validateUsersFile', () => {
  it('fills in the defaults', () => {
    const users = validateUsersFile({ users: [{ username: 'alice', passwordHash: HASH }] }, 'users.yaml');
    assert.deepEqual(users, { users: [{ username: 'alice', passwordHash: HASH, suspended: false }] });
    assert.deepEqual(validateUsersFile({}, 'users.yaml'), { users: [] });
  });

  it('describes a bad password hash without printing it', () => {
    const data = {
      users: [
        { username: 'alice', passwordHash: HASH },
        { username: 'bob', passwordHash: HASH },
        { username: 'carol', passwordHash: 'hunter2-plaintext' },
      ],
    };
    const problems = problemsOf(() => validateUsersFile(data, 'users.yaml'));
    assert.deepEqual(problems, ['users.yaml: users[2].passwordHash: expected a scrypt/argon2id/bcrypt hash']);
    assert.ok(!problems.join('\n').includes('hunter2'));
  });

  it('never prints a secret, even inside a larger value', () => {
    const data = { users: { a: { passwordHash: 'hunter2', secret: 's3cret' } } };
    let message = '';
    try {
      validateUsersFile(data, 'users.yaml');
    } catch (err: unknown) {
      assert.ok(err instanceof ConfigError);
      message = err.message;
    }
    assert.equal(
      message,
      'users.yaml: users: got {"a":{"passwordHash":"<redacted>","secret":"<redacted>"}}, expected a list',
    );
    assert.ok(!message.includes('hunter2') && !message.includes('s3cret'));
  });

  it('rejects a duplicate username, naming it and both indexes', () => {
    const data = {
      users: [
        { username: 'alice', passwordHash: HASH },
        { username: 'bob', passwordHash: HASH },
        { username: 'alice', passwordHash: HASH },
      ],
    };
    assert.throws(
      () => validateUsersFile(data, 'users.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'SLUICE_ERR_DUPLICATE_USER');
        assert.deepEqual(err.problems, [
          'users.yaml: users[2].username: "alice" is already used by users[0]',
        ]);
        return true;
      },
    );
  });
});

describe('cross-field checks', () => {
  const base = { spoolDir: 's', usersFile: 'u' };
  it('refuses two listeners with one name or one address and port', () => {
    assert.throws(
      () =>
        validateRelayConfig(
          {
            ...base,
            listeners: [
              { name: 'a', port: 587 },
              { name: 'a', port: 465 },
              { name: 'b', port: 587 },
            ],
          },
          'config.yaml',
        ),
      (err: ConfigError) => {
        assert.deepEqual(err.problems, [
          'config.yaml: listeners[1].name: "a" is already used by listeners[0]',
          'config.yaml: listeners[2].port: [::]:587 is already used by listeners[0]',
        ]);
        return true;
      },
    );
  });
  it('names each delivery.allowedNetworks entry that is no address or network', () => {
    assert.throws(
      () =>
        validateRelayConfig(
          {
            ...base,
            listeners: [{ name: 'a', port: 0 }],
            delivery: { allowedNetworks: ['10.0.0.0/8', '10.0.0.0/33', '1.2.3', 'fd00::/7'] },
          },
          'c.yaml',
        ),
      (err: ConfigError) => {
        assert.deepEqual(err.problems, [
          'c.yaml: delivery.allowedNetworks[1]: got "10.0.0.0/33", expected an IP address or CIDR network such as 10.0.0.0/8',
          'c.yaml: delivery.allowedNetworks[2]: got "1.2.3", expected an IP address or CIDR network such as 10.0.0.0/8',
        ]);
        return true;
      },
    );
  });
  it('names each delivery.egressAddresses entry that is no IP address', () => {
    assert.throws(
      () =>
        validateRelayConfig(
          {
            ...base,
            listeners: [{ name: 'a', port: 0 }],
            delivery: { egressAddresses: ['192.0.2.7', '1.2.3', '2001:db8::25', '::::'] },
          },
          'c.yaml',
        ),
      (err: ConfigError) => {
        assert.deepEqual(err.problems, [
          'c.yaml: delivery.egressAddresses[1]: got "1.2.3", expected an IPv4 or IPv6 address',
          'c.yaml: delivery.egressAddresses[3]: got "::::", expected an IPv4 or IPv6 address',
        ]);
        return true;
      },
    );
  });
  it('requires state.redis when the backend is redis, and min TTL <= max TTL', () => {
    assert.throws(
      () =>
        validateRelayConfig(
          {
            ...base,
            listeners: [{ name: 'a', port: 0 }],
            state: { backend: 'redis' },
            dnsbl: { minTtlSeconds: 10, maxTtlSeconds: 5 },
          },
          'c.yaml',
        ),
      (err: ConfigError) => {
        assert.deepEqual(err.problems, [
          'c.yaml: state.redis: required field missing (state.backend is redis)',
          'c.yaml: dnsbl.minTtlSeconds: got 10, expected at most dnsbl.maxTtlSeconds (5)',
        ]);
        return true;
      },
    );
  });
});
