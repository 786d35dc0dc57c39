// What a client types does not reach logs and replies as it came: AUTH names that are no
// user are logged only as a keyed hash, no log line repeats a key, and control and
// bidirectional characters are escaped in replies (attachment names) and in log lines.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  duplicateKeys,
  EXE_ATTACHMENT,
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  type TestRelay,
  transaction,
  waitFor,
} from '../testing/index.ts';

const PLAIN = { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } };

/** A message whose attachment is named by RFC 2231 percent-encoded UTF-8. */
function attachmentNamed(encoded: string): string {
  return [
    'Subject: files',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attached',
    '--b',
    'Content-Type: application/octet-stream',
    `Content-Disposition: attachment; filename*=UTF-8''${encoded}`,
    '',
    'MZ',
    '--b--',
    '',
  ].join('\r\n');
}

describe('text from the client in logs and replies', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({
      config: { ...PLAIN, authLockout: { maxFailuresPerUser: 2, maxFailuresPerIp: 100 } },
    });
  });
  after(() => t.close());

  it('logs an AUTH name that is no user only as a hash, bounded, and a known user by name', async () => {
    const secret = 'Tr0ub4dor&3 typed into the user field';
    const huge = `x${'\u202e'.repeat(1000)}${'y'.repeat(4000)}`;
    const c = await RawSmtpClient.connect(t.port('plain'));
    await c.greeting();
    await c.ehlo();
    assert.equal((await c.authPlain(secret, 'whatever')).code, 535);
    assert.equal((await c.authPlain(secret, 'whatever')).code, 535);
    assert.equal((await c.authPlain(huge, 'whatever')).code, 535);
    await c.quit();
    const bad = await RawSmtpClient.connect(t.port('plain'));
    await bad.greeting();
    await bad.ehlo();
    assert.equal((await bad.authPlain('alice', 'wrong password')).code, 535);
    await bad.quit();
    await waitFor('both sessions logged', () => t.logs.events('connection').length >= 2);

    const text = t.logs.raw.join('\n');
    assert.ok(!text.includes('Tr0ub4dor'), 'the typed text is in no log line');
    assert.ok(!text.includes('yyyyyyyy'), 'nor any of the long name');
    for (const line of t.logs.raw) assert.ok(line.length < 2048, `a log line of ${line.length} characters`);
    const failed = t.logs.events('rejected').filter((l) => l.reason === 'auth_failed');
    assert.equal(failed.length, 4);
    const [first, second, third, known] = failed;
    for (const l of [first, second, third]) {
      assert.equal(l?.user, undefined);
      assert.match(String(l?.unknownUser), /^[0-9a-f]{16}$/);
    }
    assert.equal(first?.unknownUser, second?.unknownUser, 'one name, one hash');
    assert.notEqual(first?.unknownUser, third?.unknownUser);
    assert.equal(known?.user, 'alice');
    const lockout = t.logs.events('auth_lockout').find((l) => l.scope === 'user');
    assert.equal(lockout?.unknownUser, first?.unknownUser);
    assert.equal(lockout?.user, undefined);
  });

  it('escapes control and bidirectional characters in an attachment name it echoes', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const to = ['bob@example.net'];
    const cases: Array<[string, string]> = [
      ['invoice%E2%80%AEfdp.exe', 'invoice\\u202Efdp.exe'],
      ['a%07b%0D%0Ac%E2%81%A6d.exe', 'a\\u0007b\\u000D\\u000Ac\\u2066d.exe'],
    ];
    for (const [encoded, shown] of cases) {
      c.write(`MAIL FROM:<alice@example.com>\r\nRCPT TO:<${to[0]}>\r\nDATA\r\n`);
      assert.deepEqual(
        [(await c.reply()).code, (await c.reply()).code, (await c.reply()).code],
        [250, 250, 354],
      );
      c.write(`${attachmentNamed(encoded)}.\r\n`);
      const reply = await c.reply();
      assert.equal(reply.code, 550);
      assert.equal(reply.text, `5.7.1 Attachment "${shown}" refused: .exe files are not allowed`);
    }
    const long = await transaction(c, {
      from: 'alice@example.com',
      to,
      body: attachmentNamed(`${'n'.repeat(2000)}.exe`),
    });
    assert.equal(long, 550);
    await c.quit();
    const rejected = t.logs.events('rejected').filter((l) => l.reason === 'blocked_attachment');
    assert.ok(
      rejected.every((l) => String(l.reply).length < 400),
      'the echoed name is bounded',
    );
  });

  it('writes bidirectional characters in log lines as escapes', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    const sender = 'adm\u202ein\u2066@example.com';
    assert.equal((await c.command(`MAIL FROM:<${sender}>`)).code, 553, 'not ASCII without SMTPUTF8');
    assert.equal((await c.command(`MAIL FROM:<${sender}> SMTPUTF8`)).code, 250);
    await c.command('RCPT TO:<bob@example.net>');
    await c.command('DATA');
    c.write('Subject: hi\r\n\r\nhi\r\n.\r\n');
    assert.equal((await c.reply()).code, 250);
    await c.quit();
    const accepted = t.logs.events('accepted').at(-1);
    assert.equal(accepted?.sender, 'adm\\u202Ein\\u2066@example.com');
    assert.ok(!t.logs.raw.some((line) => /[\u202e\u2066]/.test(line)), 'no such character in any line');
  });
});

describe('log lines', () => {
  it('never repeat a key, through auth failure, refusals and an accepted message', async () => {
    const t = await startTestRelay({ config: PLAIN });
    try {
      const c = await RawSmtpClient.connect(t.port('plain'));
      await c.greeting();
      await c.ehlo();
      assert.equal((await c.authPlain('alice', 'wrong')).code, 535);
      assert.equal((await c.authPlain('nobody', 'wrong')).code, 535);
      assert.equal((await c.authPlain('alice', PASSWORD)).code, 235);
      assert.equal((await c.command('MAIL FROM:<alice@example.com> MT-PRIORITY=3')).code, 555);
      const to = ['bob@example.net'];
      assert.equal(await transaction(c, { from: 'alice@example.com', to, body: EXE_ATTACHMENT }), 550);
      assert.equal(await transaction(c, { from: 'alice@example.com', to }), 250);
      assert.equal((await c.command('FROB')).code, 500);
      await c.quit();
      await waitFor('the connection line', () => t.logs.events('connection').length > 0);
      const events = new Set(t.logs.lines.map((l) => l.event));
      for (const e of ['rejected', 'auth', 'accepted', 'connection']) assert.ok(events.has(e), e);
      for (const line of t.logs.raw) assert.deepEqual(duplicateKeys(line), [], line);
    } finally {
      await t.close();
    }
  });
});
