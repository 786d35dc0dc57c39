import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const MAIN = new URL('../main.ts', import.meta.url).pathname;
const GOOD = '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA';

/** The real command line, as an operator runs it before rolling a change out. */
async function checkConfig(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, 'check-config', path]);
    return { code: 0, stdout, stderr };
  } catch (err: unknown) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function files(t: { after: (fn: () => Promise<void>) => void }, config: string, users: string) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.yaml'), config);
  await writeFile(join(dir, 'users.yaml'), users);
  return { dir, config: join(dir, 'config.yaml'), users: join(dir, 'users.yaml') };
}

const CONFIG = 'listeners: [{ name: submission, port: 587 }]\nspoolDir: spool\nusersFile: users.yaml\n';

describe('check-config', () => {
  it('accepts a valid pair of files', async (t) => {
    const f = await files(t, CONFIG, `users:\n  - { username: shop, passwordHash: '${GOOD}' }\n`);
    const result = await checkConfig(f.config);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${f.config}: ok (1 listeners); ${f.users}: ok (1 users)\n`);
  });

  it('exits 1 naming the file, the entry and the problem of a hash whose parameters are out of range', async (t) => {
    const bad = '$argon2id$v=19$m=4,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA';
    const f = await files(
      t,
      CONFIG,
      `users:\n  - { username: shop, passwordHash: '${GOOD}' }\n  - { username: printer, passwordHash: '${bad}' }\n`,
    );
    const result = await checkConfig(f.config);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `${f.users}: users[1].passwordHash: user "printer": argon2id parameter m must be an integer from 8 to 262144\n` +
        'check-config: 1 problem; not valid\n',
    );
    assert.ok(!result.stderr.includes('c2FsdHNhbHQ'), 'the hash is never printed');
  });

  it('reports the problems of both files in one run', async (t) => {
    const f = await files(
      t,
      `${CONFIG}limits: { idleTimeoutSeconds: 3000000 }\n`,
      `users:\n  - { username: shop, passwordHash: '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA' }\n`,
    );
    const result = await checkConfig(f.config);
    assert.equal(result.code, 1);
    assert.deepEqual(result.stderr.trimEnd().split('\n'), [
      `${f.config}: limits.idleTimeoutSeconds: got 3000000, expected an integer <= 3600`,
      `${f.users}: users[0].passwordHash: user "shop": scrypt salt must be 8 to 64 bytes, not 4`,
      'check-config: 2 problems; not valid',
    ]);
  });

  it('exits 1 naming the DKIM key that is too short, of the wrong type, or not a key', async (t) => {
    const pem = (k: ReturnType<typeof generateKeyPairSync>['privateKey']) =>
      k.export({ type: 'pkcs8', format: 'pem' }) as string;
    const f = await files(
      t,
      `${CONFIG}dkim:\n  keys:\n` +
        '    - { domain: a.example, selector: s1, privateKeyFile: short.pem }\n' +
        '    - { domain: b.example, selector: s1, algorithm: ed25519-sha256, privateKeyFile: rsa.pem }\n' +
        '    - { domain: c.example, selector: s1, privateKeyFile: junk.pem }\n',
      `users:\n  - { username: shop, passwordHash: '${GOOD}' }\n`,
    );
    await writeFile(
      join(f.dir, 'short.pem'),
      pem(generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey),
    );
    await writeFile(
      join(f.dir, 'rsa.pem'),
      pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey),
    );
    await writeFile(join(f.dir, 'junk.pem'), 'not a key\n');
    const result = await checkConfig(f.config);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /dkim\.keys\[0\]\.privateKeyFile: an RSA key of 512 bits is too short/);
    assert.match(
      result.stderr,
      /dkim\.keys\[1\]\.privateKeyFile: algorithm ed25519-sha256 needs an Ed25519 key, not rsa/,
    );
    assert.match(result.stderr, /dkim\.keys\[2\]\.privateKeyFile: .*junk\.pem is not a PEM private key/);
    assert.match(result.stderr, /check-config: 3 problems; not valid/);
  });
});
