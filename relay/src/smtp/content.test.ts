// What the relay does with message content: blocked attachments are refused at end
// of DATA naming the file, bare CR/LF line endings can never end the data early here or
// downstream (SMTP smuggling), and a missing Date or Message-ID is added.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { authenticated, PASSWORD, PLAIN_LISTENER, startTestRelay, type TestRelay } from '../testing/index.ts';
import { zip } from '../testing/zip.ts';

describe('blocked attachments', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } } });
  });
  after(() => t.close());

  const transport = () =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: t.port('plain'),
      secure: false,
      ignoreTLS: true,
      auth: { user: 'alice', pass: PASSWORD },
    });

  it('refuses an .exe attachment with 550 5.7.1 naming the file, and spools nothing', async () => {
    const before = (await t.queued()).length;
    await assert.rejects(
      transport().sendMail({
        from: 'alice@example.com',
        to: 'bob@example.net',
        subject: 'invoice',
        text: 'see attached',
        attachments: [{ filename: 'Invoice 2026.PDF.exe', content: Buffer.from('MZ...') }],
      }),
      (err: { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 550);
        assert.equal(
          err.response,
          '550 5.7.1 Attachment "Invoice 2026.PDF.exe" refused: .exe files are not allowed',
        );
        return true;
      },
    );
    assert.equal((await t.queued()).length, before);
    const metrics = await t.relay.metrics.registry.getSingleMetricAsString('sluice_smtp_rejections_total');
    assert.match(metrics, /reason="blocked_attachment",stage="data"} 1/);
  });

  it('finds an RFC 2231 encoded name inside an attached message', async () => {
    const inner = [
      'Subject: fwd',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="in"',
      '',
      '--in',
      'Content-Type: text/plain',
      '',
      'hi',
      '--in',
      'Content-Type: application/octet-stream',
      "Content-Disposition: attachment; filename*0*=utf-8''r%C3%A9sum%C3%A9; filename*1*=.scr",
      'Content-Transfer-Encoding: base64',
      '',
      'TVo=',
      '--in--',
      '',
    ].join('\r\n');
    await assert.rejects(
      transport().sendMail({
        from: 'alice@example.com',
        to: 'bob@example.net',
        subject: 'fwd',
        text: 'forwarded',
        attachments: [{ filename: 'forwarded.eml', content: inner, contentType: 'message/rfc822' }],
      }),
      (err: { response?: string }) => {
        assert.equal(err.response, '550 5.7.1 Attachment "résumé.scr" refused: .scr files are not allowed');
        return true;
      },
    );
  });

  it('accepts harmless attachments', async () => {
    const info = await transport().sendMail({
      from: 'alice@example.com',
      to: 'bob@example.net',
      subject: 'report',
      text: 'attached',
      attachments: [
        { filename: 'report.pdf', content: Buffer.alloc(1000, 1) },
        { filename: 'notes.exe.txt', content: 'x' },
      ],
    });
    assert.match(info.response, /^250 2\.0\.0 /);
  });

  it('refuses a zip attachment holding a blocked file, naming both, unless inspectArchives is off', async () => {
    const archive = zip([
      { name: 'Statement.pdf', data: '%PDF-1.7', deflate: true },
      { name: 'tools/setup.exe', data: 'MZ', descriptor: true },
    ]);
    const mail = {
      from: 'alice@example.com',
      to: 'bob@example.net',
      subject: 'statement',
      text: 'see attached',
      attachments: [{ filename: 'Statement.zip', content: archive }],
    };
    await assert.rejects(transport().sendMail(mail), (err: { responseCode?: number; response?: string }) => {
      assert.equal(
        err.response,
        '550 5.7.1 Attachment "Statement.zip/tools/setup.exe" refused: .exe files are not allowed',
      );
      return true;
    });
    const harmless = zip([{ name: 'Statement.pdf', data: '%PDF-1.7' }]);
    const info = await transport().sendMail({
      ...mail,
      attachments: [{ filename: 'Statement.zip', content: harmless }],
    });
    assert.match(info.response, /^250 /);
    const open = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        attachments: { inspectArchives: false },
      },
    });
    try {
      const sent = await nodemailer
        .createTransport({
          host: '127.0.0.1',
          port: open.port('plain'),
          ignoreTLS: true,
          auth: { user: 'alice', pass: PASSWORD },
        })
        .sendMail(mail);
      assert.match(sent.response, /^250 /);
    } finally {
      await open.close();
    }
  });

  const refusal = (expected: string) => (err: { responseCode?: number; response?: string }) => {
    assert.equal(err.response, expected);
    return true;
  };

  it('refuses a zip whose directory leaves the .exe out (read from its local header)', async () => {
    const decoy = { name: 'Statement.pdf', data: '%PDF-1.7', descriptor: true };
    const locals = zip([decoy, { name: 'setup.exe', data: 'MZ' }], { withoutDirectory: true });
    const lying = zip([decoy]);
    const archive = Buffer.concat([locals, lying.subarray(zip([decoy], { withoutDirectory: true }).length)]);
    const mail = { from: 'alice@example.com', to: 'bob@example.net', subject: 's', text: 'see attached' };
    await assert.rejects(
      transport().sendMail({ ...mail, attachments: [{ filename: 'Statement.zip', content: archive }] }),
      refusal('550 5.7.1 Attachment "Statement.zip/setup.exe" refused: .exe files are not allowed'),
    );
  });

  it('refuses an .exe uuencoded in the text, or named with an NTFS stream suffix', async () => {
    const mail = { from: 'alice@example.com', to: 'bob@example.net', subject: 'fyi' };
    await assert.rejects(
      transport().sendMail({ ...mail, text: 'here:\r\n\r\nbegin 644 Invoice.exe\r\nM35H`\r\n`\r\nend\r\n' }),
      refusal('550 5.7.1 Attachment "Invoice.exe" refused: .exe files are not allowed'),
    );
    await assert.rejects(
      transport().sendMail({
        ...mail,
        text: 'x',
        attachments: [{ filename: 'Invoice.exe::$DATA', content: 'MZ' }],
      }),
      refusal('550 5.7.1 Attachment "Invoice.exe::$DATA" refused: .exe files are not allowed'),
    );
  });

  it('honours a configured list', async () => {
    const custom = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        attachments: { blockedExtensions: ['docm'] },
      },
    });
    try {
      const send = (filename: string) =>
        nodemailer
          .createTransport({
            host: '127.0.0.1',
            port: custom.port('plain'),
            ignoreTLS: true,
            auth: { user: 'alice', pass: PASSWORD },
          })
          .sendMail({
            from: 'alice@example.com',
            to: 'b@example.net',
            text: 'x',
            attachments: [{ filename, content: 'x' }],
          })
          .then(
            (info) => Number(info.response.slice(0, 3)),
            (err: { responseCode: number }) => err.responseCode,
          );
      assert.equal(await send('macro.DOCM'), 550);
      assert.equal(await send('tool.exe'), 250);
    } finally {
      await custom.close();
    }
  });
});

describe('SMTP smuggling', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } } });
  });
  after(() => t.close());

  for (const [name, sequence] of [
    ['\\n.\\n', '\n.\n'],
    ['\\n.\\r\\n', '\n.\r\n'],
    ['\\r\\n.\\n', '\r\n.\n'],
    ['\\r.\\r', '\r.\r'],
  ] as const) {
    it(`keeps ${name} inside the message and stores CRLF line endings only`, async () => {
      const c = await authenticated(t.port('plain'), 'alice');
      const smuggled =
        `Subject: smuggle\r\n\r\nbefore${sequence}MAIL FROM:<admin@victim.test>\r\n` +
        'RCPT TO:<target@victim.test>\r\nDATA\r\nSubject: forged\r\n\r\nforged\r\n';
      const before = (await t.queued()).length;
      const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], smuggled);
      assert.equal(replies.at(-1)?.code, 250, 'one message, one 250');
      assert.equal((await c.command('NOOP')).code, 250, 'no stray replies from smuggled commands');
      await c.quit();
      const queued = await t.queued();
      assert.equal(queued.length, before + 1);
      const stored = queued.find((m) => m.envelope.queueId === replies.at(-1)?.text.split(' ').pop());
      assert.ok(stored);
      const text = stored.body.toString('latin1');
      assert.equal(text.replace(/\r\n/g, '').match(/[\r\n]/), null, 'no bare CR or LF is left');
      assert.equal(stored.envelope.crlfOnly, true, 'the envelope says so: delivery trusts it');
      assert.match(
        text,
        /before\r\n\.\r\nMAIL FROM:<admin@victim\.test>\r\n/,
        'the smuggled text is plain content',
      );
      assert.deepEqual(
        queued.at(-1)?.envelope.recipients.map((r) => r.address),
        ['bob@example.net'],
      );
    });
  }

  it('counts rewritten line endings in a metric', async () => {
    const metrics = await t.relay.metrics.registry.getSingleMetricAsString(
      'sluice_smtp_bare_line_endings_total',
    );
    assert.match(metrics, /kind="lf"} [1-9]/);
    assert.match(metrics, /kind="cr"} [1-9]/);
  });
});

describe('missing Date and Message-ID', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } } });
  });
  after(() => t.close());

  async function submit(message: string): Promise<{ queueId: string; text: string }> {
    const c = await authenticated(t.port('plain'), 'alice');
    const replies = await c.sendRaw('alice@example.com', ['bob@example.net'], message);
    await c.quit();
    assert.equal(replies.at(-1)?.code, 250);
    const queueId = replies.at(-1)?.text.split(' ').pop() ?? '';
    const stored = (await t.queued()).find((m) => m.envelope.queueId === queueId);
    assert.ok(stored);
    return { queueId, text: stored.body.toString('latin1') };
  }

  it('adds them to a message that has neither (as a scanner or a script sends it)', async () => {
    const message = 'From: scanner@example.com\r\nSubject: Scan 0042\r\n\r\nsee attached\r\n';
    const { queueId, text } = await submit(message);
    const header = text.slice(0, text.indexOf('\r\n\r\n'));
    assert.match(header, new RegExp(`\r\nMessage-ID: <${queueId}@[^>\r\n]+>\r\n`));
    const date = /\r\nDate: ([^\r\n]+)\r\n/.exec(header)?.[1] ?? '';
    assert.match(date, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
    assert.ok(Math.abs(Date.parse(date) - Date.now()) < 60_000, date);
    assert.ok(text.endsWith(message), 'the message itself follows unchanged');
  });

  it('leaves a message that has both as it was', async () => {
    const message =
      'From: a@example.com\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\nMessage-ID: <own@example.com>\r\n\r\nhi\r\n';
    const { text } = await submit(message);
    assert.ok(text.startsWith('Received: '));
    assert.equal(text.slice(text.indexOf('\r\nFrom: ') + 2), message);
  });
});

describe('SMTPUTF8 on the way out', () => {
  let t: TestRelay;
  before(async () => {
    t = await startTestRelay({ config: { listeners: [PLAIN_LISTENER], auth: { allowPlaintext: true } } });
  });
  after(() => t.close());

  /** What the spooled envelope asks of delivery for a message sent with this MAIL FROM. */
  async function spooledNeed(mailFrom: string, rcpt: string, message: string): Promise<string | undefined> {
    const c = await authenticated(t.port('plain'), 'alice');
    assert.equal((await c.command(mailFrom)).code, 250);
    assert.equal((await c.command(`RCPT TO:<${rcpt}>`)).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(Buffer.from(`${message}.\r\n`, 'utf8'));
    const reply = await c.reply();
    await c.quit();
    assert.equal(reply.code, 250, reply.text);
    const queueId = reply.text.split(' ').pop();
    const stored = (await t.queued()).find((m) => m.envelope.queueId === queueId);
    // the trace header names the protocol (RFC 6531 3.7.3)
    const withProtocol = /^Received: [^;]* with (\S+) id /.exec(stored?.body.toString('utf8') ?? '')?.[1];
    assert.equal(withProtocol, mailFrom.endsWith(' SMTPUTF8') ? 'UTF8SMTPA' : 'ESMTPA');
    return stored?.envelope.smtpUtf8;
  }

  it('marks a message whose client declared SMTPUTF8 as needing it when its header or addresses are UTF-8', async () => {
    const utf8Header = 'From: Jörg <alice@example.com>\r\nSubject: Grüße\r\n\r\nhi\r\n';
    const asciiHeader = 'From: alice@example.com\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße\r\n';
    const declared = 'MAIL FROM:<alice@example.com> SMTPUTF8';
    assert.equal(await spooledNeed(declared, 'bob@example.net', utf8Header), 'needed');
    assert.equal(
      await spooledNeed(declared, 'bob@example.net', asciiHeader),
      'declared',
      'UTF-8 in the body only',
    );
    assert.equal(await spooledNeed(declared, 'zoë@example.net', asciiHeader), 'needed');
    // not declared: passed on as before (8-bit header bytes ride on 8BITMIME)
    assert.equal(
      await spooledNeed('MAIL FROM:<alice@example.com>', 'bob@example.net', utf8Header),
      undefined,
    );
  });
});
