// Writes delivery status notifications into the spool as messages of their own: null
// reverse-path (so they are never bounced in turn), addressed to the original sender,
// delivered like any other message.

import { readFile } from 'node:fs/promises';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { newQueueId } from '../spool/queue-id.ts';
import type { Spool } from '../spool/spool.ts';
import { toCrlf } from '../wire/crlf.ts';
import { buildDsn, FULL_RETURN_MAX_BYTES, readHeaderBlock } from './dsn.ts';
import type { DsnRequest } from './types.ts';

export function createDsnEnqueuer(options: {
  spool: Spool;
  hostname: () => string;
  now?: () => number;
}): (request: DsnRequest) => Promise<void> {
  const now = options.now ?? Date.now;
  return async (request) => {
    const { envelope } = request;
    // never a bounce for a bounce
    if (envelope.sender === '' || envelope.dsn || request.recipients.length === 0) return;
    const queueId = newQueueId(now());
    const host = options.hostname();
    // RET=FULL: a failure notice returns the message itself, when it is small enough
    const whole =
      request.action === 'failed' && envelope.ret === 'FULL' && envelope.size <= FULL_RETURN_MAX_BYTES
        ? (await readFile(request.bodyPath)).subarray(0, envelope.size)
        : undefined;
    // the spool holds CRLF-only bodies; remote reply text quoted in the notice may not be
    const message = toCrlf(
      buildDsn({
        reportingMta: host,
        envelope,
        recipients: request.recipients,
        action: request.action,
        // the whole message, when read, holds its header: the file is not read twice
        originalHeaders: whole ?? (await readHeaderBlock(request.bodyPath, undefined, envelope.size)),
        ...(whole ? { originalMessage: whole } : {}),
        now: new Date(now()),
        messageId: `<${queueId}.dsn@${host}>`,
      }),
    );
    const writer = options.spool.createWriter(queueId);
    writer.end(message);
    const dsnEnvelope: SpooledEnvelope = {
      version: 1,
      queueId,
      receivedAt: new Date(now()).toISOString(),
      sender: '',
      recipients: [{ address: envelope.sender, state: 'pending' }],
      droppedRecipients: 0,
      user: '',
      clientIp: '',
      clientHelo: '',
      listener: 'dsn',
      tls: false,
      size: message.length,
      sessionId: envelope.sessionId,
      dsn: true,
      crlfOnly: true,
    };
    await writer.commit(dsnEnvelope);
  };
}
