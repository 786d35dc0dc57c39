// Bcc and Resent-Bcc header fields (RFC 5322 3.6.3) never reach a recipient: a script or
// printer that submits a message with a Bcc header, expecting `sendmail -t`, has it
// removed before the message is queued, as Postfix does. Real relays deliver by MX to
// real SMTP sinks found on a real DNS server; `headers.keepBcc` keeps the fields.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import {
  PASSWORD,
  PLAIN_LISTENER,
  type SmtpSink,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../src/testing/index.ts';

const MESSAGE = [
  'From: Scanner <scanner@sender.test>',
  'To: Team <team@one.test>',
  'BCC: boss@two.test,',
  '  auditor@three.test',
  'Cc: desk@one.test',
  'Resent-Bcc: archive@three.test',
  'Subject: scan 0042',
  'bcc:',
  '',
  'Scanned document attached.',
  'Bcc: this line is body text and stays',
  '',
].join('\r\n');
const RECIPIENTS = [
  'team@one.test',
  'desk@one.test',
  'boss@two.test',
  'auditor@three.test',
  'archive@three.test',
];

describe('Bcc removal', () => {
  let dns: TestDnsServer;
  let sinks: SmtpSink[];
  const relays: TestRelay[] = [];
  before(async () => {
    dns = await startDnsServer();
    const first = await startSmtpSink({ host: '127.0.0.2' });
    // MX records carry no port: every MX host listens on the same one, on its own loopback address
    sinks = [
      first,
      await startSmtpSink({ host: '127.0.0.3', port: first.port }),
      await startSmtpSink({ host: '127.0.0.4', port: first.port }),
    ];
    for (const [i, domain] of ['one.test', 'two.test', 'three.test'].entries()) {
      dns.setMx(domain, [{ exchange: `mx.${domain}`, priority: 10 }]);
      dns.setA(`mx.${domain}`, [`127.0.0.${i + 2}`]);
    }
  });
  after(async () => {
    for (const r of relays) await r.close();
    for (const s of sinks) await s.close();
    await dns.close();
  });

  async function relayWith(headers: Record<string, unknown>): Promise<TestRelay> {
    const relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        headers,
        delivery: { resolvers: [dns.address], port: sinks[0]?.port, allowLocalAddresses: true },
      },
    });
    relays.push(relay);
    return relay;
  }

  /** Submits MESSAGE as it is and returns every copy the MX hosts received, as text. */
  async function deliveredCopies(relay: TestRelay): Promise<string[]> {
    const before = sinks.map((s) => s.messages.length);
    await nodemailer
      .createTransport({
        host: '127.0.0.1',
        port: relay.port('plain'),
        ignoreTLS: true,
        auth: { user: 'alice', pass: PASSWORD },
      })
      .sendMail({ envelope: { from: 'scanner@sender.test', to: RECIPIENTS }, raw: MESSAGE });
    await waitFor('a copy at each MX host', () =>
      sinks.every((s, i) => s.messages.length > (before[i] ?? 0)),
    );
    return sinks.flatMap((s, i) => s.messages.slice(before[i]).map((m) => m.raw.toString('latin1')));
  }

  it('removes Bcc and Resent-Bcc, folded lines included, from every delivered copy by default', async () => {
    const copies = await deliveredCopies(await relayWith({}));
    assert.equal(copies.length, 3);
    for (const copy of copies) {
      const [header = '', body = ''] = copy.split('\r\n\r\n');
      assert.doesNotMatch(header, /^(resent-)?bcc:/im, 'no Bcc field');
      assert.doesNotMatch(header, /boss@|auditor@|archive@/, 'no hidden recipient');
      assert.match(header, /^To: Team <team@one\.test>\r\nCc: desk@one\.test\r\nSubject: scan 0042$/m);
      assert.match(body, /^Bcc: this line is body text and stays\r\n/m, 'the body is untouched');
    }
  });

  it('keeps them with headers.keepBcc', async () => {
    const copies = await deliveredCopies(await relayWith({ keepBcc: true }));
    assert.equal(copies.length, 3);
    for (const copy of copies) {
      assert.match(copy, /^BCC: boss@two\.test,\r\n {2}auditor@three\.test\r\n/m);
      assert.match(copy, /^Resent-Bcc: archive@three\.test\r\n/m);
    }
  });
});
