// The README's first two steps: start the relay on its embedded default, then send mail
// with the swaks command it prints. The command is taken from the banner as printed.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { waitFor } from '../src/testing/index.ts';
import { skipUnlessPresent } from '../src/testing/requirements.ts';

const MAIN = new URL('../src/main.ts', import.meta.url).pathname;
const SWAKS = '/usr/bin/swaks';

it('runs on the embedded default and takes the swaks command it prints', {
  skip: skipUnlessPresent(!existsSync(SWAKS) && 'swaks is not installed (scripts/test-deps.sh installs it)'),
}, async () => {
  const home = await mkdtemp(join(tmpdir(), 'sluice-embedded-'));
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, SLUICE_HOME: home, SLUICE_EMBEDDED_PORTS: 'random' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let banner = '';
  child.stderr.on('data', (d: Buffer) => {
    banner += d.toString();
  });
  try {
    await waitFor('the banner with the swaks command', () => banner.includes('--to you@example.net'));
    const command = /swaks ([^\n]*)\\\n\s*([^\n]*)/.exec(banner);
    assert.ok(command, banner);
    const args =
      `${command[1]} ${command[2]}`.match(/'[^']*'|\S+/g)?.map((a) => a.replace(/^'|'$/g, '')) ?? [];
    assert.match(banner, /demo user:\s+demo\s+password: \S+/);
    const out = await new Promise<string>((resolve, reject) =>
      execFile(SWAKS, args, { timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    assert.match(out, /<~ {2}235 2\.7\.0 /, 'AUTH over STARTTLS');
    const queued = /<~ {2}250 2\.0\.0 Ok: queued as ([0-9A-F]+)/.exec(out);
    assert.ok(queued, out);
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    await rm(home, { recursive: true, force: true });
  }
});
