// The drain hand-off between two real relays: the stopping one logs, for each message it
// handed on, the id the peer gave it in its 250 reply, and the peer's queue has it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startTestRelay,
  testUser,
  waitFor,
} from '../testing/index.ts';
import { freePort } from '../testing/ports.ts';
import { peerQueueIdOf } from './handoff.ts';

const HANDOFF_USER = 'sluice-internal-handoff';

describe('drain hand-off', () => {
  it('reads the queue id from the reply of a Sluice, Postfix or Exim peer', () => {
    assert.equal(peerQueueIdOf('250 2.0.0 Ok: queued as 0MCJ5ZQ8WAB12CD34EF'), '0MCJ5ZQ8WAB12CD34EF');
    assert.equal(peerQueueIdOf('250 2.0.0 Ok: queued as 4dQ8Lk1Sxyz'), '4dQ8Lk1Sxyz');
    assert.equal(peerQueueIdOf('250 OK id=1vRrTa-00000000Xyz-0abc'), '1vRrTa-00000000Xyz-0abc');
    assert.equal(peerQueueIdOf('250 2.0.0 Ok'), undefined);
  });

  it("logs the peer's queue id of each message handed on", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-handoff-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'handoff-password'), PASSWORD);
    const handoff = (port: number) => ({
      host: '127.0.0.1',
      port,
      tls: 'none',
      username: HANDOFF_USER,
      passwordFile: join(dir, 'handoff-password'),
      fromNetworks: ['127.0.0.0/8'],
    });
    const users = [await testUser('alice'), await testUser(HANDOFF_USER)];
    const peer = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        drain: { handoff: handoff(1) },
      },
      users,
    });
    t.after(() => peer.close());
    // the stopping relay's destination is a port where nothing listens: its mail stays queued
    const stopping = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        delivery: {
          mode: 'smarthost',
          smarthost: { host: '127.0.0.1', port: await freePort(), tls: 'none' },
        },
        drain: { handoff: handoff(peer.port('plain')) },
      },
      users,
    });
    const client = await RawSmtpClient.connect(stopping.port('plain'));
    await client.greeting();
    await client.ehlo();
    await client.authPlain('alice', PASSWORD);
    const replies = await client.sendRaw(
      'alice@sender.test',
      ['bob@one.test'],
      'Subject: on\r\n\r\nhand me on\r\n',
    );
    await client.quit();
    const queueId = /queued as (\S+)/.exec(replies.at(-1)?.text ?? '')?.[1];
    assert.ok(queueId, JSON.stringify(replies));
    await waitFor('a failed attempt', () =>
      stopping.logs.events('delivery_attempt').some((l) => l.queueId === queueId),
    );
    await stopping.close();

    const handed = stopping.logs.events('handed_off');
    assert.equal(handed.length, 1);
    assert.equal(handed[0]?.queueId, queueId);
    const peerQueueId = handed[0]?.peerQueueId;
    assert.equal(typeof peerQueueId, 'string');
    assert.notEqual(peerQueueId, queueId);
    assert.equal(handed[0]?.response, `250 2.0.0 Ok: queued as ${peerQueueId}`);
    // the peer has the message under that id
    const queued = await peer.queued();
    assert.deepEqual(
      queued.map((q) => [q.envelope.queueId, q.envelope.sender, q.envelope.recipients.map((r) => r.address)]),
      [[peerQueueId, 'alice@sender.test', ['bob@one.test']]],
    );
    assert.match(queued[0]?.body.toString('utf8') ?? '', /\r\n\r\nhand me on\r\n$/);
  });
});
