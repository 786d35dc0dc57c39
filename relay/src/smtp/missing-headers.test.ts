import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { MissingHeaders, withoutBcc } from './missing-headers.ts';

const FIELDS = { date: () => 'Sat, 28 Nov 2026 16:00:00 +0000', messageId: () => '<Q1@relay.test>' };
const ADDED_BOTH = 'Date: Sat, 28 Nov 2026 16:00:00 +0000\r\nMessage-ID: <Q1@relay.test>\r\n';

/** The message after MissingHeaders, fed in the given pieces; and the fields it added. */
function complete(pieces: string[]): { text: string; added: string[] } {
  const headers = new MissingHeaders(FIELDS);
  const out: Buffer[] = [];
  for (const piece of pieces) {
    const passed = headers.take(Buffer.from(piece, 'latin1'));
    if (passed) out.push(passed);
  }
  const rest = headers.end();
  if (rest) out.push(rest);
  return { text: Buffer.concat(out).toString('latin1'), added: headers.added };
}

describe('MissingHeaders', () => {
  it('puts a Date and a Message-ID in front of a header that has neither', () => {
    const message = 'From: a@b.test\r\nSubject: scan\r\n\r\nbody\r\n';
    assert.deepEqual(complete([message]), { text: ADDED_BOTH + message, added: ['Date', 'Message-ID'] });
  });

  it('adds only what is missing, whatever the case of the field names', () => {
    const withDate = 'DATE: Fri, 27 Nov 2026 10:00:00 +0100\r\nSubject: x\r\n\r\nbody\r\n';
    assert.deepEqual(complete([withDate]), {
      text: `Message-ID: <Q1@relay.test>\r\n${withDate}`,
      added: ['Message-ID'],
    });
    const withBoth =
      'Subject: x\r\nmessage-id: <a@b>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n\r\nbody\r\n';
    assert.deepEqual(complete([withBoth]), { text: withBoth, added: [] });
    const headers = new MissingHeaders(FIELDS);
    headers.take(Buffer.from(withBoth, 'latin1'));
    assert.equal(headers.messageId, '<a@b>', 'the Message-ID found, for the accepted log line');
    const added = new MissingHeaders(FIELDS);
    added.take(Buffer.from(withDate, 'latin1'));
    assert.equal(added.messageId, '<Q1@relay.test>');
  });

  it('reads only the header: a Date or Message-ID in the body or a folded line does not count', () => {
    const message = 'Subject: a\r\n date: not a field\r\n\r\nDate: in the body\r\nMessage-ID: <x@y>\r\n';
    assert.equal(complete([message]).text, ADDED_BOTH + message);
  });

  it('gives the same result however the message is split', () => {
    const message = `From: a@b.test\r\nSubject: split\r\nX-Long: ${'x'.repeat(300)}\r\n\r\nbody\r\n.\r\nmore\r\n`;
    const whole = complete([message]).text;
    for (let i = 0; i < 200; i++) {
      const cuts = [0, ...Array.from({ length: 4 }, () => Math.floor(Math.random() * message.length))];
      cuts.sort((a, b) => a - b);
      const pieces = cuts.map((cut, k) => message.slice(cut, cuts[k + 1] ?? message.length));
      assert.equal(complete(pieces).text, whole, JSON.stringify(cuts));
    }
    assert.equal(whole, ADDED_BOTH + message);
  });

  it('completes a message that is all header, or empty, at its end', () => {
    assert.equal(complete(['Subject: only a header\r\n']).text, `${ADDED_BOTH}Subject: only a header\r\n`);
    assert.equal(
      complete(['\r\nbody without a header\r\n']).text,
      `${ADDED_BOTH}\r\nbody without a header\r\n`,
    );
    assert.equal(complete([]).text, ADDED_BOTH);
  });

  it('leaves data alone that does not start with a header field, or whose header does not end', () => {
    const text = 'hello, this is no header\r\n\r\nbody\r\n';
    assert.deepEqual(complete([text]), { text, added: [] });
    const endless = `Subject: x\r\n${'X-Pad: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n'.repeat(1200)}`;
    const pieces = endless.match(/[\s\S]{1,8192}/g) ?? [];
    assert.deepEqual(complete([...pieces, '\r\nbody\r\n']), { text: `${endless}\r\nbody\r\n`, added: [] });
  });

  it('notes UTF-8 in the header only, and that it could not look at a header too long to hold', () => {
    const eightBit = (pieces: Buffer[]) => {
      const headers = new MissingHeaders(FIELDS);
      for (const piece of pieces) headers.take(piece);
      headers.end();
      return headers.eightBit;
    };
    const utf8 = (text: string) => Buffer.from(text, 'utf8');
    assert.equal(eightBit([utf8('Subject: Grüße\r\n\r\nbody\r\n')]), true);
    assert.equal(eightBit([utf8('Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße\r\n')]), false, 'body');
    assert.equal(eightBit([utf8('Subject: hi\r\nTo: Zoë <zoe@b.test>')]), true, 'a header without a body');
    // held up to 64 KB: a header still going on then is passed on without a look
    const long = utf8(
      `Subject: x\r\n${'X-Pad: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n'.repeat(2000)}\r\nbody\r\n`,
    );
    const pieces = Array.from({ length: Math.ceil(long.length / 8192) }, (_, k) =>
      long.subarray(k * 8192, (k + 1) * 8192),
    );
    assert.equal(eightBit(pieces), undefined);
  });

  it('holds a header sent a byte at a time with linear work, and finds an end split over pieces', () => {
    const header = `Subject: small pieces\r\n${'X-Long: abcdefghijklmnopqrstuvwxyz\r\n'.repeat(1_500)}`;
    const message = `${header}\r\nbody\r\n`;
    const concat = Buffer.concat;
    let copied = 0;
    const spy = mock.method(Buffer, 'concat', (list: readonly Uint8Array[], length?: number) => {
      const joined = concat(list, length);
      copied += joined.length;
      return joined;
    });
    let bytewise: { text: string; added: string[] };
    try {
      bytewise = complete([...message]);
    } finally {
      spy.mock.restore();
    }
    assert.deepEqual(bytewise, complete([message]));
    assert.equal(bytewise.text, ADDED_BOTH + message);
    // each piece is searched with the 3 bytes before it (4 bytes copied per 1-byte piece),
    // the header is joined once, the added fields go in front, and this test joins the
    // output: a few times the message, where holding by concatenation copied ~n²/2 bytes
    assert.ok(copied <= 8 * message.length, `${copied} bytes copied for a ${message.length}-byte message`);
    assert.deepEqual(complete(['Subject: x\r\n\r', '\nbody\r\n']), complete(['Subject: x\r\n\r\nbody\r\n']));
    assert.deepEqual(complete(['\r', '\nbody\r\n']), complete(['\r\nbody\r\n']));
  });

  it('removes Bcc and Resent-Bcc fields with their folded lines, wherever they are and however the message is split', () => {
    const message =
      'Bcc: first@x.test\r\nFrom: a@b.test\r\nRESENT-BCC : r@x.test,\r\n\ts@x.test\r\nSubject: hi\r\n' +
      'X-Bcc: stays\r\nbcc:\r\n\r\nBcc: body text\r\n';
    const expected = `${ADDED_BOTH}From: a@b.test\r\nSubject: hi\r\nX-Bcc: stays\r\n\r\nBcc: body text\r\n`;
    const removing = (pieces: string[]) => {
      const headers = new MissingHeaders({ ...FIELDS, removeBcc: true });
      const out = pieces.flatMap((p) => headers.take(Buffer.from(p, 'latin1')) ?? []);
      const rest = headers.end();
      return {
        text: Buffer.concat(rest ? [...out, rest] : out).toString('latin1'),
        removed: headers.removedBcc,
      };
    };
    assert.deepEqual(removing([message]), { text: expected, removed: 3 });
    for (let cut = 1; cut < message.length; cut += 7) {
      assert.deepEqual(
        removing([message.slice(0, cut), message.slice(cut)]),
        { text: expected, removed: 3 },
        `cut at ${cut}`,
      );
    }
    assert.deepEqual(removing(['Subject: only a header\r\nBcc: x@y.test\r\n']), {
      text: `${ADDED_BOTH}Subject: only a header\r\n`,
      removed: 1,
    });
    assert.deepEqual(complete([message]).text, ADDED_BOTH + message, 'kept unless asked');
    assert.deepEqual(withoutBcc('Subject: x\r\n'), { header: 'Subject: x\r\n', removed: 0 });
  });
});
