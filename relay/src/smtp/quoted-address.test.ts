// Quoted local parts (RFC 5321 4.1.2) in MAIL FROM and RCPT TO are accepted, kept, and
// delivered with their quoting intact to a real SMTP server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  authenticated,
  PLAIN_LISTENER,
  type SmtpSink,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
} from '../testing/index.ts';

describe('quoted local parts', () => {
  let sink: SmtpSink;
  let t: TestRelay;
  before(async () => {
    sink = await startSmtpSink({ quotedLocalParts: true });
    t = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
      },
    });
  });
  after(async () => {
    await t.close();
    await sink.close();
  });

  it('accepts them in MAIL FROM and RCPT TO and delivers them as quoted', async () => {
    const sender = '"quoted user"@example.net';
    const recipients = ['"a\\"b"@example.net', '"x@y"@example.org', '"Fred Bloggs"@example.com'];
    const c = await authenticated(t.port('plain'), 'alice');
    const mail = await c.command(`MAIL FROM:<${sender}> SIZE=100`);
    assert.equal(mail.code, 250, mail.text);
    for (const rcpt of recipients) {
      const r = await c.command(`RCPT TO:<${rcpt}> NOTIFY=FAILURE`);
      assert.equal(r.code, 250, `${rcpt}: ${r.text}`);
    }
    assert.equal((await c.command('DATA')).code, 354);
    c.write('Subject: quoted\r\n\r\nhello\r\n.\r\n');
    assert.equal((await c.reply()).code, 250);
    await c.quit();

    await sink.waitForMessages(1);
    const [message] = sink.messages;
    assert.equal(message?.sender, sender);
    assert.deepEqual(message?.recipients, recipients);
    // on the wire, exactly as the client wrote them
    assert.ok(sink.envelopeCommands.some((l) => l.startsWith(`MAIL FROM:<${sender}>`)));
    for (const rcpt of recipients) {
      assert.ok(
        sink.envelopeCommands.some((l) => l.startsWith(`RCPT TO:<${rcpt}>`)),
        rcpt,
      );
    }
    const accepted = t.logs.events('accepted').at(-1);
    assert.equal(accepted?.sender, sender);
  });

  it('still refuses a quoted string that is not one, or that the next hop could not be given', async () => {
    const c = await authenticated(t.port('plain'), 'alice');
    assert.equal((await c.command('MAIL FROM:<alice@example.com>')).code, 250);
    for (const bad of [
      '"unterminated@example.net',
      '"a<b"@example.net',
      '"a b"',
      '"bad\\\u00e9"@example.net',
    ]) {
      const r = await c.command(`RCPT TO:<${bad}>`);
      assert.equal(r.code, 501, bad);
    }
    await c.quit();
  });
});
