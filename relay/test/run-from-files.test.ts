import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../src/observability/logger.ts';
import { runFromFiles } from '../src/run-from-files.ts';
import {
  authenticated,
  LogCapture,
  PLAIN_LISTENER,
  startTestRelay,
  testPasswordHash,
  testUser,
} from '../src/testing/index.ts';
import { scrapeMetrics } from '../src/testing/metrics-scrape.ts';

const CONFIG = [
  'hostname: relay.test',
  'listeners:',
  '  - { name: plain, address: 127.0.0.1, port: 0, tls: none }',
  'auth: { allowPlaintext: true }',
  'admin: { address: 127.0.0.1, port: 0 }',
  'dnsbl: { enabled: false }',
  'spoolDir: spool',
  'stateDir: state',
  'usersFile: users.yaml',
  '',
].join('\n');

function usersText(hash: string, restricted: boolean, extra = ''): string {
  const senders = restricted ? "    allowedSenders: ['@shop.test']\n" : '';
  return `users:\n  - username: shop\n    passwordHash: '${hash}'\n${senders}${extra}`;
}

/** MAIL FROM in a fresh authenticated session: the reply the client sees. */
async function mailFrom(port: number, sender: string): Promise<string> {
  const c = await authenticated(port, 'shop');
  const reply = await c.command(`MAIL FROM:<${sender}>`);
  await c.quit();
  return `${reply.code} ${reply.text}`;
}

describe('reload from files', () => {
  it('a users file with one malformed hash changes nothing; the good file then applies', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-reload-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const hash = await testPasswordHash();
    const configPath = join(dir, 'config.yaml');
    const usersPath = join(dir, 'users.yaml');
    await writeFile(configPath, CONFIG);
    await writeFile(usersPath, usersText(hash, true));
    const logs = new LogCapture();
    const { relay, reloader } = await runFromFiles({
      configPath,
      logger: () => createLogger({ level: 'info', destination: logs }),
      // only reload() acts (as on SIGHUP): the watcher stays out of the test
      debounceMs: 600_000,
      relay: { deliver: false, defaultMetrics: false },
    });
    t.after(async () => {
      reloader.close();
      await relay.close(200, 200);
    });
    const port = relay.ports.plain ?? 0;
    const refused = '553 5.7.1 Sender address <ceo@corp.test> is not allowed for user shop';
    assert.equal(await mailFrom(port, 'ceo@corp.test'), refused);

    // The restriction is lifted in the same file that adds a user with a bad bcrypt cost.
    const bad = '$2b$99$gCDE0OjZBnNGGZs4MN7Yf.Xv3KDnKact7IJjxMzHLi.GP21dQDgha';
    await writeFile(usersPath, usersText(hash, false, `  - username: printer\n    passwordHash: '${bad}'\n`));
    const rejected = once(reloader, 'rejected');
    assert.equal(await reloader.reload(), false);
    await rejected;
    const line = logs.events('config_rejected').at(-1);
    assert.equal(line?.which, 'users');
    assert.equal(line?.code, 'SLUICE_ERR_PASSWORD_HASH');
    assert.deepEqual(line?.problems, [
      `${usersPath}: users[1].passwordHash: user "printer": bcrypt hash must look like $2b$<cost 04-31>$<53 characters of salt and hash>`,
    ]);
    const afterBad = await scrapeMetrics(relay.adminPort);
    assert.equal(afterBad.value('sluice_config_reloads_total', { result: 'rejected' }), 1);
    assert.equal(afterBad.value('sluice_config_reloads_total', { result: 'applied' }), 0);
    assert.equal(afterBad.value('sluice_config_last_reload_successful', {}), 0, 'runs on older files');
    assert.equal(await mailFrom(port, 'ceo@corp.test'), refused, 'the old restriction is still enforced');
    assert.equal(relay.users.has('printer'), false);

    await writeFile(usersPath, usersText(hash, false));
    assert.equal(await reloader.reload(), true);
    assert.equal(await mailFrom(port, 'ceo@corp.test'), '250 2.1.0 Accepted');
    const afterGood = await scrapeMetrics(relay.adminPort);
    assert.equal(afterGood.value('sluice_config_reloads_total', { result: 'applied' }), 1);
    assert.equal(afterGood.value('sluice_config_last_reload_successful', {}), 1);
  });

  it('Relay.apply changes nothing when any part of the new values fails', async (t) => {
    const relay = await startTestRelay({
      config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } },
      users: [await testUser('shop', { allowedSenders: ['@shop.test'] })],
    });
    t.after(() => relay.close());
    const port = relay.port('plain');
    const refused = '553 5.7.1 Sender address <ceo@corp.test> is not allowed for user shop';
    const lifted = {
      users: [await testUser('shop'), await testUser('printer', { passwordHash: '$scrypt$x' })],
    };
    await assert.rejects(relay.relay.apply(relay.relay.config, lifted), { code: 'SLUICE_ERR_PASSWORD_HASH' });
    assert.equal(await mailFrom(port, 'ceo@corp.test'), refused);
    assert.equal(relay.relay.users.size, 1);

    const missingCert = {
      ...relay.relay.config,
      tls: { certFile: '/nonexistent/tls.crt', keyFile: '/nonexistent/tls.key' },
    };
    await assert.rejects(relay.relay.apply(missingCert, { users: [await testUser('shop')] }));
    assert.equal(await mailFrom(port, 'ceo@corp.test'), refused);
  });
});
