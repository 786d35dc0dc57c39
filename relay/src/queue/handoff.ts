// Drain: a relay that stops hands what is still queued to a peer relay (the policy's
// relay Service) over SMTP with an internal credential, and removes each message only
// after the peer acknowledged it with 250. Whatever cannot be handed on stays in the
// spool and is delivered when this pod starts again: nothing is dropped.
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { RelayConfig } from '../config/schema.ts';
import { envelopeDsn, StuffingSMTPConnection } from '../delivery/dot-stuffing.ts';
import type { Logger } from '../observability/logger.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { messageStream, withHeaderPrefix } from '../spool/message-file.ts';
import { isOpen } from './outcomes.ts';
import { jobDsn } from './plan-jobs.ts';

export type HandoffConfig = NonNullable<RelayConfig['drain']['handoff']>;

export interface HandoffQueue {
  get(queueId: string): Promise<SpooledEnvelope | undefined>;
  remove(queueId: string): Promise<boolean>;
  bodyPath(queueId: string): string;
}

function call<T>(
  fn: (cb: (err: Error | null | undefined, value?: T) => void) => void,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

/**
 * The queue id in a peer's 250 reply to the end of DATA: "queued as <id>" (Sluice and
 * Postfix say it so) or "id=<id>" (Exim); undefined when it names none.
 */
export function peerQueueIdOf(response: string | undefined): string | undefined {
  if (response === undefined) return undefined;
  const queuedAs = /\bqueued as ([A-Za-z0-9]+)/i.exec(response);
  if (queuedAs) return queuedAs[1];
  const id = /\bid=([A-Za-z0-9-]+)/i.exec(response);
  return id?.[1];
}

export async function handOff(options: {
  ids: readonly string[];
  queue: HandoffQueue;
  config: HandoffConfig;
  password: string;
  hostname: string;
  logger: Logger;
}): Promise<{ handedOff: string[]; kept: string[] }> {
  const { config, queue, logger } = options;
  const handedOff: string[] = [];
  const kept: string[] = [];
  // delivery's client: it dot-stuffs as delivery does and can pass SMTPUTF8 on
  const connection = new StuffingSMTPConnection({
    host: config.host,
    port: config.port,
    secure: config.tls === 'implicit',
    requireTLS: config.tls === 'starttls',
    ignoreTLS: config.tls === 'none',
    // an in-cluster peer with the policy's own certificate, reached by Service name
    tls: { rejectUnauthorized: false },
    name: options.hostname,
    connectionTimeout: 10_000,
  });
  connection.on('error', () => undefined);
  try {
    await call<void>((cb) => connection.connect(cb));
    await call<unknown>((cb) => connection.login({ user: config.username, pass: options.password }, cb));
  } catch (err: unknown) {
    logger.error(
      { event: 'handoff_failed', peer: config.host, err: String(err) },
      'cannot reach the handoff peer',
    );
    connection.close();
    return { handedOff, kept: [...options.ids] };
  }
  for (const queueId of options.ids) {
    const envelope = await queue.get(queueId);
    const recipients = (envelope?.recipients ?? []).filter(isOpen).map((r) => r.address);
    if (!envelope || recipients.length === 0) continue;
    connection.crlfOnly = envelope.crlfOnly === true;
    // the peer learns what the client declared or asked (SMTPUTF8, DSN), to act on it in turn
    connection.smtpUtf8 = envelope.smtpUtf8 !== undefined;
    const { dsn } = jobDsn(envelope, recipients);
    connection.dsn = dsn;
    try {
      const info = await call<SMTPConnection.SentMessageInfo>((cb) =>
        connection.send(
          {
            from: envelope.sender,
            to: recipients,
            size: envelope.size + Buffer.byteLength(envelope.headerPrefix ?? '', 'latin1'),
            use8BitMime: true,
            ...envelopeDsn(dsn),
          },
          // the DKIM signature made at acceptance travels with the message
          withHeaderPrefix(envelope.headerPrefix, messageStream(queue.bodyPath(queueId), envelope.size)),
          cb,
        ),
      );
      if (!info || info.rejected.length > 0) throw new Error(`peer refused ${info?.rejected.join(', ')}`);
      await queue.remove(queueId);
      handedOff.push(queueId);
      const peerQueueId = peerQueueIdOf(info.response);
      logger.info(
        {
          event: 'handed_off',
          queueId,
          peer: config.host,
          // the message's id on the peer, where its life goes on (its logs and queue listing)
          ...(peerQueueId === undefined ? {} : { peerQueueId }),
          recipients: recipients.length,
          response: info.response,
        },
        'message handed to peer relay',
      );
      await call<unknown>((cb) => connection.reset(cb));
    } catch (err: unknown) {
      kept.push(queueId);
      logger.warn({ event: 'handoff_kept', queueId, err: String(err) }, 'message stays in the spool');
      try {
        await call<unknown>((cb) => connection.reset(cb));
      } catch {
        break;
      }
    }
  }
  // the ids never tried (the peer went away): kept too; Sets, since a drain can leave a million
  const tried = new Set([...handedOff, ...kept]);
  for (const id of options.ids) if (!tried.has(id)) kept.push(id);
  connection.quit();
  return { handedOff, kept };
}
