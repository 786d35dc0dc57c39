// A relay whose spool fills up, on a small filesystem of its own: a tmpfs mounted for
// the test (mounting needs root, which CI runs as). What clients get (452 4.3.1 at MAIL
// FROM, and after DATA when the disk fills mid-message), what /readyz and /metrics say,
// that nothing half written stays behind, and that mail flows again once there is room.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authenticated, PLAIN_LISTENER, startTestRelay, type TestRelay } from '../src/testing/index.ts';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

async function readiness(t: TestRelay): Promise<{ status: number; spool: string }> {
  const res = await fetch(`http://127.0.0.1:${t.relay.adminPort}/readyz`);
  const body = (await res.json()) as { checks: Array<{ name: string; detail?: string }> };
  return { status: res.status, spool: body.checks.find((c) => c.name === 'spool')?.detail ?? '' };
}

async function metric(t: TestRelay, name: string): Promise<string> {
  return t.relay.metrics.registry.getSingleMetricAsString(name);
}

/** A message of about `bytes` bytes of plain text lines. */
function message(bytes: number): string {
  const line = `${'x'.repeat(76)}\r\n`;
  return `Subject: big\r\n\r\n${line.repeat(Math.ceil(bytes / line.length))}`;
}

/** An 8 MiB tmpfs for the spool; why not, when it cannot be mounted here. */
async function mountSmallDisk(): Promise<{ dir: string; mountPoint: string } | string> {
  if (!isRoot) return 'mounting a tmpfs needs root';
  const dir = await mkdtemp(join(tmpdir(), 'sluice-space-'));
  const mountPoint = join(dir, 'fs');
  await mkdir(mountPoint);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { stdio: 'pipe' });
  } catch (err: unknown) {
    await rm(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  return { dir, mountPoint };
}

const disk = await mountSmallDisk();

describe('a full spool', { skip: typeof disk === 'string' && disk }, () => {
  const { dir, mountPoint } = typeof disk === 'string' ? { dir: '', mountPoint: '' } : disk;
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        spoolDir: join(mountPoint, 'spool'),
        limits: { maxMessageBytes: 7 * MiB },
        spool: { reserveMegabytes: 2 },
      },
    });
  });
  after(async () => {
    try {
      await t?.close();
    } finally {
      execFileSync('umount', [mountPoint]);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses at MAIL FROM with 452 4.3.1 when the disk is short, and is not ready', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    assert.equal(
      (await c.sendRaw('alice@example.com', ['bob@example.net'], message(1000))).at(-1)?.code,
      250,
    );
    const ready = await readiness(t);
    assert.equal(ready.status, 200);
    assert.match(ready.spool, /^\d+ MiB free of 8 MiB$/);

    // a declared SIZE that would eat into the reserve: refused before any data
    const declared = await c.command(`MAIL FROM:<alice@example.com> SIZE=${6.5 * MiB}`);
    assert.equal(declared.code, 452);
    assert.equal(declared.text, '4.3.1 Insufficient system storage, try again later');
    assert.equal((await c.command('MAIL FROM:<alice@example.com> SIZE=1000')).code, 250);
    assert.equal((await c.command('RSET')).code, 250);

    // the disk fills up (another writer): under the 2 MiB reserve
    const free = t.relay.spoolSpace.sample?.freeBytes ?? 0;
    await writeFile(join(mountPoint, 'filler'), Buffer.alloc(free - MiB));
    await t.relay.spoolSpace.refresh();
    const refused = await c.command('MAIL FROM:<alice@example.com>');
    assert.equal(refused.code, 452);
    assert.equal(refused.text, '4.3.1 Insufficient system storage, try again later');
    await c.quit();

    const notReady = await readiness(t);
    assert.equal(notReady.status, 503);
    assert.match(
      notReady.spool,
      /^1 MiB free of 8 MiB, under the reserve of 2 MiB: MAIL FROM gets 452 4\.3\.1$/,
    );
    const freeGauge = Number(
      /^sluice_spool_free_bytes (\d+)$/m.exec(await metric(t, 'sluice_spool_free_bytes'))?.[1],
    );
    assert.ok(freeGauge > 0 && freeGauge < 2 * MiB, `free bytes gauge ${freeGauge}`);
    assert.match(
      await metric(t, 'sluice_spool_reserve_bytes'),
      new RegExp(`^sluice_spool_reserve_bytes ${2 * MiB}$`, 'm'),
    );
    assert.match(
      await metric(t, 'sluice_smtp_rejections_total'),
      /reason="insufficient_storage",stage="mail"} 2/,
    );
    assert.equal(t.logs.events('rejected').filter((e) => e.reason === 'insufficient_storage').length, 2);
  });

  it('refuses a message the disk runs out under with 452 4.3.1, keeping nothing of it', async () => {
    // no reserve: MAIL FROM is let through, and the 2 MB message does not fit in the 1 MiB left
    await t.relay.apply(
      { ...t.relay.config, spool: { ...t.relay.config.spool, reserveMegabytes: 0 } },
      { users: [...t.relay.users.values()] },
    );
    const queuedBefore = (await t.queued()).length;
    const c = await authenticated(t.port('plain'), 'alice');
    const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], message(2 * MiB));
    assert.deepEqual(
      replies.map((r) => r.code),
      [250, 250, 354, 452],
    );
    assert.equal(replies.at(-1)?.text, '4.3.1 Insufficient system storage, try again later');
    // the session goes on: a small message still fits
    assert.equal(
      (await c.sendRaw('alice@example.com', ['bob@example.net'], message(1000))).at(-1)?.code,
      250,
    );
    // a message small enough to be written in one go at the end of DATA, with ~50 KB left
    await t.relay.spoolSpace.refresh();
    const left = t.relay.spoolSpace.sample?.freeBytes ?? 0;
    await writeFile(join(mountPoint, 'filler-2'), Buffer.alloc(Math.max(0, left - 50_000)));
    const small = await c.sendRaw('alice@example.com', ['bob@example.net'], message(200_000));
    assert.equal(small.at(-1)?.code, 452, small.at(-1)?.text);
    await rm(join(mountPoint, 'filler-2'));
    await c.quit();
    assert.equal((await t.queued()).length, queuedBefore + 1);
    const incoming = join(mountPoint, 'spool', 'incoming');
    for (const name of await readdir(incoming)) {
      assert.equal((await stat(join(incoming, name))).size, 0, `${name} is an empty file made ahead`);
    }
    assert.equal(t.logs.events('spool_error').length, 2);
    assert.match(
      await metric(t, 'sluice_smtp_messages_total'),
      /result="tempfail",reason="insufficient_storage"} 2/,
    );
  });

  it('takes mail again once there is room', async () => {
    await t.relay.apply(
      { ...t.relay.config, spool: { ...t.relay.config.spool, reserveMegabytes: 2 } },
      { users: [...t.relay.users.values()] },
    );
    await rm(join(mountPoint, 'filler'));
    await t.relay.spoolSpace.refresh();
    assert.equal((await readiness(t)).status, 200);
    const c = await authenticated(t.port('plain'), 'alice');
    assert.equal(
      (await c.sendRaw('alice@example.com', ['bob@example.net'], message(1000))).at(-1)?.code,
      250,
    );
    await c.quit();
  });
});
