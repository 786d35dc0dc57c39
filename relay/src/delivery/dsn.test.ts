import assert from 'node:assert/strict';
import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Transform } from 'node:stream';
import { after, before, describe, it, mock } from 'node:test';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { buildDsn, readHeaderBlock } from './dsn.ts';

// The parts of mailsplit (untyped CommonJS) the test reads the notice back with.
interface SplitNode {
  type: 'node';
  contentType: string | false;
  headers: { getFirst(key: string): string; get(key: string): string[] };
}
type SplitData = SplitNode | { type: 'body' | 'data'; node: SplitNode; value: Buffer };
const { Splitter } = createRequire(import.meta.url)('mailsplit') as { Splitter: new () => Transform };

interface Part {
  contentType: string;
  header(key: string): string;
  body: string;
}

/** Splits a message with mailsplit into its MIME nodes (root first) with their bodies. */
async function parse(message: Buffer): Promise<Part[]> {
  const parts: { node: SplitNode; chunks: Buffer[] }[] = [];
  const splitter = new Splitter();
  const done = new Promise<void>((resolve, reject) => {
    splitter.on('data', (data: SplitData) => {
      if (data.type === 'node') parts.push({ node: data, chunks: [] });
      else if (data.type === 'body') parts.find((p) => p.node === data.node)?.chunks.push(data.value);
    });
    splitter.on('end', resolve);
    splitter.on('error', reject);
  });
  splitter.end(message);
  await done;
  return parts.map(({ node, chunks }) => ({
    contentType: node.contentType === false ? '' : node.contentType,
    header: (key: string) => node.headers.getFirst(key),
    body: Buffer.concat(chunks).toString('utf8'),
  }));
}

type Fields = Map<string, string>;

/** Reads a message/delivery-status body: per-message fields, then one group per recipient. */
function statusGroups(body: string): Fields[] {
  return body
    .split(/\r\n\r\n/)
    .filter((group) => group.trim() !== '')
    .map((group) => {
      const fields: Fields = new Map();
      for (const line of group.replace(/\r\n[ \t]/g, ' ').split('\r\n')) {
        if (line === '') continue;
        const colon = line.indexOf(':');
        fields.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
      }
      return fields;
    });
}

function assertWellFormed(message: Buffer): void {
  const text = message.toString('latin1');
  assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'no bare CR or LF');
  for (const line of text.split('\r\n')) assert.ok(line.length <= 998, `line of ${line.length} chars`);
}

const ARRIVED = '2025-07-01T10:00:00.000Z';
const NOW = new Date('2025-07-01T12:30:00.000Z');
const ORIGINAL_HEADERS = Buffer.from(
  'Received: from client.test ([192.0.2.1])\r\n\tby relay.example.net (Sluice) with ESMTPSA id 0MCJ5ZQ8WAB12CD34EF;\r\n' +
    '\tTue, 01 Jul 2025 10:00:00 +0000\r\n' +
    'From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: Quarterly report\r\n' +
    'Message-ID: <abc@example.com>\r\n',
);

function envelope(recipients: SpooledRecipient[], overrides: Partial<SpooledEnvelope> = {}): SpooledEnvelope {
  return spooledEnvelope({
    queueId: '0MCJ5ZQ8WAB12CD34EF',
    receivedAt: ARRIVED,
    recipients,
    size: 1234,
    ...overrides,
  });
}

describe('buildDsn', () => {
  const bounced: SpooledRecipient[] = [
    {
      address: 'bob@example.org',
      state: 'bounced',
      attempts: 1,
      response: '550 5.1.1 <bob@example.org>: no such user',
      status: '5.1.1',
      remoteHost: 'mx1.example.org',
      finishedAt: '2025-07-01T10:00:05.000Z',
    },
    {
      address: 'carol@example.net',
      state: 'bounced',
      attempts: 3,
      response: 'no MX or A record for example.net',
    },
  ];

  it('reports failed recipients as an RFC 3464 multipart/report', async () => {
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(bounced),
      recipients: bounced,
      action: 'failed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '<0MCJ5ZQ8WAB12CD34EF.dsn@relay.example.net>',
    });
    assertWellFormed(message);
    const [root, text, report, headers, ...rest] = await parse(message);
    assert.ok(root && text && report && headers);
    assert.equal(rest.length, 0);

    assert.equal(root.header('from'), 'Mail Delivery System <MAILER-DAEMON@relay.example.net>');
    assert.equal(root.header('to'), '<alice@example.com>');
    assert.equal(root.header('subject'), 'Undelivered Mail Returned to Sender');
    assert.equal(root.header('date'), 'Tue, 01 Jul 2025 12:30:00 +0000');
    assert.equal(root.header('message-id'), '<0MCJ5ZQ8WAB12CD34EF.dsn@relay.example.net>');
    assert.equal(root.header('auto-submitted'), 'auto-replied');
    assert.equal(root.header('mime-version'), '1.0');
    assert.equal(root.contentType, 'multipart/report');
    assert.match(root.header('content-type'), /report-type=delivery-status/);

    assert.equal(text.contentType, 'text/plain');
    text.body = text.body.replace(/\r\n {4}/g, ' '); // unwrap continuation lines
    assert.match(text.body, /relay\.example\.net/);
    assert.match(
      text.body,
      /<bob@example\.org>: host mx1\.example\.org said: 550 5\.1\.1 <bob@example\.org>: no such user/,
    );
    assert.match(text.body, /<carol@example\.net>: no MX or A record for example\.net/);
    assert.match(text.body, /0MCJ5ZQ8WAB12CD34EF/);

    assert.equal(report.contentType, 'message/delivery-status');
    const [perMessage, bob, carol, ...more] = statusGroups(report.body);
    assert.equal(more.length, 0);
    assert.deepEqual(
      perMessage,
      new Map([
        ['reporting-mta', 'dns; relay.example.net'],
        ['x-sluice-queue-id', '0MCJ5ZQ8WAB12CD34EF'],
        ['arrival-date', 'Tue, 01 Jul 2025 10:00:00 +0000'],
      ]),
    );
    assert.deepEqual(
      bob,
      new Map([
        ['final-recipient', 'rfc822; bob@example.org'],
        ['action', 'failed'],
        ['status', '5.1.1'],
        ['remote-mta', 'dns; mx1.example.org'],
        ['diagnostic-code', 'smtp; 550 5.1.1 <bob@example.org>: no such user'],
        ['last-attempt-date', 'Tue, 01 Jul 2025 10:00:05 +0000'],
      ]),
    );
    // A local failure: no status recorded (the default applies), no remote MTA, not an SMTP answer.
    assert.deepEqual(
      carol,
      new Map([
        ['final-recipient', 'rfc822; carol@example.net'],
        ['action', 'failed'],
        ['status', '5.0.0'],
        ['diagnostic-code', 'X-Sluice; no MX or A record for example.net'],
        ['last-attempt-date', 'Tue, 01 Jul 2025 12:30:00 +0000'],
      ]),
    );

    assert.equal(headers.contentType, 'text/rfc822-headers');
    assert.equal(headers.body, ORIGINAL_HEADERS.toString('utf8'));
  });

  it('tells the sender about a delay, when retries end, and defaults the status to 4.0.0', async () => {
    const deferred: SpooledRecipient[] = [
      { address: 'dave@example.org', state: 'deferred', attempts: 4, response: '451 4.7.1 greylisted' },
    ];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(deferred),
      recipients: deferred,
      action: 'delayed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '0MCJ5ZQ8WAB12CD34EF.delay@relay.example.net',
      retryUntil: new Date('2025-07-06T10:00:00.000Z'),
    });
    assertWellFormed(message);
    const [root, text, report] = await parse(message);
    assert.ok(root && text && report);
    assert.equal(root.header('subject'), 'Delayed Mail (still being retried)');
    assert.equal(root.header('message-id'), '<0MCJ5ZQ8WAB12CD34EF.delay@relay.example.net>');
    assert.match(text.body.replace(/\r\n/g, ' '), /retried until Sun, 06 Jul 2025 10:00:00 \+0000/);
    assert.match(text.body, /<dave@example\.org>: 451 4\.7\.1 greylisted/);
    const dave = statusGroups(report.body)[1];
    assert.equal(dave?.get('action'), 'delayed');
    assert.equal(dave?.get('status'), '4.0.0');
    assert.equal(dave?.get('diagnostic-code'), 'smtp; 451 4.7.1 greylisted');
    assert.equal(dave?.get('will-retry-until'), 'Sun, 06 Jul 2025 10:00:00 +0000');
  });

  it('reports a relayed recipient (NOTIFY=SUCCESS) with ENVID and ORCPT given back', async () => {
    const relayed: SpooledRecipient[] = [
      {
        address: 'erin@example.org',
        state: 'delivered',
        attempts: 1,
        response: '250 2.0.0 Ok: queued as 4F2A',
        status: '2.0.0',
        remoteHost: 'mx.example.org',
        finishedAt: '2025-07-01T10:00:02.000Z',
        notify: ['SUCCESS'],
        orcpt: 'rfc822;Erin@Example.org',
      },
    ];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(relayed, { envid: 'QQ314159' }),
      recipients: relayed,
      action: 'relayed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '0MCJ5ZQ8WAB12CD34EF.dsn@relay.example.net',
    });
    assertWellFormed(message);
    const [root, text, report, headers] = await parse(message);
    assert.ok(root && text && report && headers);
    assert.equal(root.header('subject'), 'Successful Mail Relay Report');
    assert.match(text.body.replace(/\r\n/g, ' '), /through a mail server that sends no such notices/);
    const [perMessage, erin] = statusGroups(report.body);
    assert.equal(perMessage?.get('original-envelope-id'), 'QQ314159');
    assert.equal(erin?.get('original-recipient'), 'rfc822; Erin@Example.org');
    assert.equal(erin?.get('final-recipient'), 'rfc822; erin@example.org');
    assert.equal(erin?.get('action'), 'relayed');
    assert.equal(erin?.get('status'), '2.0.0');
    assert.equal(erin?.get('remote-mta'), 'dns; mx.example.org');
    assert.equal(headers.header('content-description'), 'Relayed Message Headers');
  });

  it('returns the whole message in a failure notice when the sender asked for RET=FULL', async () => {
    const original = Buffer.concat([ORIGINAL_HEADERS, Buffer.from('\r\nThe numbers are attached.\r\n')]);
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(bounced, { ret: 'FULL' }),
      recipients: bounced,
      action: 'failed',
      originalHeaders: ORIGINAL_HEADERS,
      originalMessage: original,
      now: NOW,
      messageId: '0MCJ5ZQ8WAB12CD34EF.dsn@relay.example.net',
    });
    assertWellFormed(message);
    const parts = await parse(message);
    const returned = parts.find((p) => p.contentType === 'message/rfc822');
    assert.ok(returned, 'a message/rfc822 part');
    assert.equal(returned.header('content-description'), 'Undelivered Message');
    assert.ok(!parts.some((p) => p.contentType === 'text/rfc822-headers'), 'instead of the headers alone');
    assert.ok(message.includes(original), 'the original, byte for byte');
    assert.match(parts[1]?.body ?? '', /Your message is attached\./);
  });

  it('says the queue lifetime bounds the retries when no end date is given', async () => {
    const never: SpooledRecipient[] = [{ address: 'erin@example.org', state: 'pending' }];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(never),
      recipients: never,
      action: 'delayed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    const [, text, report] = await parse(message);
    assert.match(
      text?.body.replace(/\r\n/g, ' ') ?? '',
      /until it has been in the queue for the maximum queue lifetime/,
    );
    const erin = statusGroups(report?.body ?? '')[1];
    // Never attempted: no diagnostic, no last attempt.
    assert.deepEqual(
      erin,
      new Map([
        ['final-recipient', 'rfc822; erin@example.org'],
        ['action', 'delayed'],
        ['status', '4.0.0'],
      ]),
    );
  });

  it('folds a long Diagnostic-Code and keeps every line within 998 characters', async () => {
    const words = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const token = 'x'.repeat(2500);
    const recipients: SpooledRecipient[] = [
      {
        address: 'a@example.org',
        state: 'bounced',
        response: `550 5.7.1 ${words}`,
        remoteHost: 'mx.example.org',
      },
      { address: 'b@example.org', state: 'bounced', response: `550 5.7.1 ${token}` },
    ];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(recipients),
      recipients,
      action: 'failed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    assertWellFormed(message);
    const report = (await parse(message))[2];
    assert.ok(report);
    const raw = report.body.split('\r\n');
    const start = raw.findIndex((l) => l.startsWith('Diagnostic-Code:'));
    assert.ok(raw[start + 1]?.startsWith(' '), 'folded onto continuation lines');
    const [, a, b] = statusGroups(report.body);
    assert.equal(a?.get('diagnostic-code'), `smtp; 550 5.7.1 ${words}`);
    assert.equal(b?.get('diagnostic-code')?.replace(/ /g, ''), `smtp;5505.7.1${token}`);
  });

  it('keeps CR and LF from a remote answer out of the notice', async () => {
    const recipients: SpooledRecipient[] = [
      {
        address: 'a@example.org',
        state: 'bounced',
        response: '550-5.1.1 first line\r\n550 5.1.1 second\rBcc: victim@example.com\n',
        remoteHost: 'mx.example.org\r\nX-Evil: 1',
      },
    ];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(recipients),
      recipients,
      action: 'failed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    assertWellFormed(message);
    assert.doesNotMatch(message.toString('latin1'), /^(Bcc|X-Evil):/m);
    const a = statusGroups((await parse(message))[2]?.body ?? '')[1];
    assert.equal(
      a?.get('diagnostic-code'),
      'smtp; 550-5.1.1 first line 550 5.1.1 second Bcc: victim@example.com',
    );
    assert.equal(a?.get('remote-mta'), 'dns; mx.example.org X-Evil: 1');
  });

  it('picks a boundary that does not occur in the original headers', async () => {
    // The first-choice boundary is predictable (queue id, time, host); a sender who plants
    // it in a header must not be able to split the notice.
    const planted = Buffer.from(
      'Subject: hi\r\nX-Trap: --0MCJ5ZQ8WAB12CD34EF.1751373000/relay.example.net--\r\n',
    );
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(bounced),
      recipients: bounced,
      action: 'failed',
      originalHeaders: planted,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    const parts = await parse(message);
    assert.equal(parts.length, 4);
    const boundary = /boundary="([^"]+)"/.exec(message.toString('latin1'))?.[1] ?? '';
    assert.notEqual(boundary, '');
    assert.ok(!planted.toString('latin1').includes(boundary));
    assert.equal(parts[3]?.body, planted.toString('latin1'));
  });

  it('normalises the original headers: CRLF, no blank line or body, long lines split', async () => {
    const long = `X-Long: ${'y'.repeat(1500)}`;
    const original = Buffer.from(`Subject: lf only\n${long}\nTo: b@example.org\n\nbody text\n`);
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(bounced),
      recipients: bounced,
      action: 'failed',
      originalHeaders: original,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    assertWellFormed(message);
    const headers = (await parse(message))[3]?.body ?? '';
    assert.ok(!headers.includes('body text'));
    assert.equal(headers.replace(/\r\n /g, ''), `Subject: lf only\r\n${long}\r\nTo: b@example.org\r\n`);
  });

  it('writes an internationalised recipient as RFC 6533 utf-8-addr-xtext', async () => {
    const recipients: SpooledRecipient[] = [
      { address: 'josé@exämple.org', state: 'bounced', status: '5.1.1' },
    ];
    const message = buildDsn({
      reportingMta: 'relay.example.net',
      envelope: envelope(recipients),
      recipients,
      action: 'failed',
      originalHeaders: ORIGINAL_HEADERS,
      now: NOW,
      messageId: '<x@relay.example.net>',
    });
    const [, text, report] = await parse(message);
    assert.match(text?.body ?? '', /<josé@exämple\.org>/);
    assert.equal(text?.header('content-transfer-encoding'), '8bit');
    assert.equal(
      statusGroups(report?.body ?? '')[1]?.get('final-recipient'),
      'utf-8; jos\\x{E9}@ex\\x{E4}mple.org',
    );
  });

  it('returns a UTF-8 header as message/global-headers (RFC 6533), an ASCII one as text/rfc822-headers', async () => {
    const build = (originalHeaders: Buffer) =>
      buildDsn({
        reportingMta: 'relay.example.net',
        envelope: envelope(bounced),
        recipients: bounced,
        action: 'failed',
        originalHeaders,
        now: NOW,
        messageId: '<x@relay.example.net>',
      });
    const utf8 = await parse(
      build(Buffer.from('Subject: Grüße aus Köln\r\nTo: bob@example.org\r\n', 'utf8')),
    );
    assert.equal(utf8[3]?.contentType, 'message/global-headers');
    assert.equal(utf8[3]?.header('content-transfer-encoding'), '8bit');
    const ascii = await parse(build(ORIGINAL_HEADERS));
    assert.equal(ascii[3]?.contentType, 'text/rfc822-headers');
  });

  it('refuses to bounce a bounce', () => {
    assert.throws(
      () =>
        buildDsn({
          reportingMta: 'relay.example.net',
          envelope: envelope(bounced, { sender: '' }),
          recipients: bounced,
          action: 'failed',
          originalHeaders: ORIGINAL_HEADERS,
          now: NOW,
          messageId: '<x@relay.example.net>',
        }),
      TypeError,
    );
  });
});

describe('readHeaderBlock', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-dsn-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Runs fn while counting the bytes every FileHandle.read returns. */
  async function countingReads<T>(fn: () => Promise<T>): Promise<{ result: T; bytesRead: number }> {
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as Pick<FileHandle, 'read'>;
    await probe.close();
    const original = proto.read;
    let bytesRead = 0;
    const spy = mock.method(proto, 'read', async function (this: FileHandle, ...args: unknown[]) {
      const result = await (original as (...a: unknown[]) => Promise<{ bytesRead: number }>).apply(
        this,
        args,
      );
      bytesRead += result.bytesRead;
      return result;
    });
    try {
      return { result: await fn(), bytesRead };
    } finally {
      spy.mock.restore();
    }
  }

  it('returns the header block of a 5 MB message without reading the body', async () => {
    const path = join(dir, 'big.eml');
    const body = Buffer.alloc(5 * 1024 * 1024, 'a\r\n');
    await writeFile(path, Buffer.concat([ORIGINAL_HEADERS, Buffer.from('\r\n'), body]));
    const { result, bytesRead } = await countingReads(() => readHeaderBlock(path));
    assert.equal(result.toString('latin1'), ORIGINAL_HEADERS.toString('latin1'));
    assert.ok(bytesRead > 0, 'the reads were counted');
    assert.ok(bytesRead <= 8 * 1024, `read ${bytesRead} bytes`);
  });

  it('stops at the cap and keeps whole lines when no blank line comes', async () => {
    const path = join(dir, 'endless.eml');
    const line = `X-Filler: ${'z'.repeat(90)}\r\n`; // 102 bytes
    await writeFile(path, line.repeat(3000));
    const { result, bytesRead } = await countingReads(() => readHeaderBlock(path, 16 * 1024));
    assert.ok(bytesRead <= 16 * 1024, `read ${bytesRead} bytes`);
    assert.equal(result.length, Math.floor((16 * 1024) / line.length) * line.length);
    assert.ok(result.toString('latin1').endsWith('\r\n'));
  });

  it('handles a message that is all header, one without headers, and LF line endings', async () => {
    const onlyHeaders = join(dir, 'only-headers.eml');
    await writeFile(onlyHeaders, 'Subject: no body\r\n');
    assert.equal((await readHeaderBlock(onlyHeaders)).toString(), 'Subject: no body\r\n');

    const noHeaders = join(dir, 'no-headers.eml');
    await writeFile(noHeaders, '\r\nbody only\r\n');
    assert.equal((await readHeaderBlock(noHeaders)).length, 0);

    const lf = join(dir, 'lf.eml');
    await writeFile(lf, 'Subject: lf\nTo: b@example.org\n\nbody\n');
    assert.equal((await readHeaderBlock(lf)).toString(), 'Subject: lf\nTo: b@example.org\n');
  });

  it('finds a blank line that straddles two reads', async () => {
    const path = join(dir, 'straddle.eml');
    const header = `X-Pad: ${'p'.repeat(8 * 1024 - 10)}\r\n`; // ends one byte past the first read
    await writeFile(path, `${header}\r\nbody\r\n`);
    assert.equal((await readHeaderBlock(path)).toString(), header);
  });
});
