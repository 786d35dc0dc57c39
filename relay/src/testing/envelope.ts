// The envelope every spool, queue and delivery test starts from: the given fields over
// plain defaults (one authenticated user, no recipients, received now).
import type { SpooledEnvelope } from '../spool/envelope.ts';

export function spooledEnvelope(
  fields: Partial<SpooledEnvelope> & Pick<SpooledEnvelope, 'queueId'>,
): SpooledEnvelope {
  return {
    version: 1,
    receivedAt: new Date().toISOString(),
    sender: 'alice@example.com',
    recipients: [],
    droppedRecipients: 0,
    user: 'alice',
    clientIp: '192.0.2.1',
    clientHelo: 'client.test',
    listener: 'submission',
    tls: true,
    size: 0,
    sessionId: 's1',
    ...fields,
  };
}
