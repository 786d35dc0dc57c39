import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readSpooled } from '../spool/message-file.ts';
import type { SpooledMessage } from '../spool/spool.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { suiteDir, testSpool } from '../testing/spools.ts';
import { createDsnEnqueuer } from './bounce.ts';

describe('bounce notices in the spool', () => {
  const dir = suiteDir('sluice-bounce-');

  it('spools a notice with CRLF line ends only, marked so, even from bare CR and LF around it', async () => {
    const spool = testSpool({ dir: join(dir(), 'spool') });
    await spool.init();
    const seen: SpooledMessage[] = [];
    spool.onCommitted((m) => seen.push(m));
    // the original message of an older spool, with bare line ends in its header block
    const original = join(dir(), 'original.eml');
    await writeFile(original, 'Subject: old\nX-Odd: a\rb\r\n\r\nbody\n');
    const enqueue = createDsnEnqueuer({ spool, hostname: () => 'relay.test' });
    await enqueue({
      envelope: spooledEnvelope({ queueId: 'Q1', sender: 'alice@example.com', size: 38 }),
      recipients: [
        {
          address: 'gone@example.net',
          state: 'bounced',
          status: '5.1.1',
          response: '550 5.1.1 no such\ruser\nhere',
          remoteHost: 'mx.example.net',
        },
      ],
      action: 'failed',
      bodyPath: original,
    });
    assert.equal(seen.length, 1);
    const notice = seen[0] as SpooledMessage;
    assert.equal(notice.envelope.dsn, true);
    assert.equal(notice.envelope.crlfOnly, true, 'delivery may trust its line ends');
    const { body } = await readSpooled(spool.queueDir, notice.queueId);
    const text = body.toString('latin1');
    assert.equal(text.replace(/\r\n/g, '').match(/[\r\n]/), null, 'no bare CR or LF');
    assert.match(text, /Subject: old\r\n/);
  });
});
