// End of the SMTP transaction: stream DATA through the smuggling defence into the
// attachment scanner and the spool at once (never buffering the message), then decide.
// The message is acknowledged only after the spool has it on disk; every refusal
// removes what was written.
import type { Readable, Transform, TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { NO_DKIM_KEYS } from '../dkim/keys.ts';
import { type DkimOutcome, MessageSigner } from '../dkim/signer.ts';
import { AttachmentScanner, type MimeBound, type ScanResult } from '../mime/attachment-scan.ts';
import { ATTR, endSpan, type Span, startSpan, traced } from '../observability/spans.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { isOutOfSpace } from '../spool/free-space.ts';
import { newQueueId } from '../spool/queue-id.ts';
import type { SpoolWriter } from '../spool/spool.ts';
import { rfc5322Date } from '../wire/date.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { LineEndingNormaliser } from './line-endings.ts';
import { MissingHeaders } from './missing-headers.ts';
import { receivedHeader } from './received-header.ts';
import type { RefusalRecorder } from './refusals.ts';
import { REPLIES, replyText, type SmtpReplyError } from './replies.ts';
import type { DataPort } from './runtime.ts';
import { checkSenders, type SenderCheckResult } from './sender-checks.ts';
import type { ConnectionState, TransactionState } from './session-state.ts';
import { describeCheck } from './session-trace.ts';

/**
 * The smuggling defence, which also adds a missing Date or Message-ID and counts what it
 * passes on against the size limit (one stream for all three: a stream per message and a
 * hop per chunk less). The limit applies to the stored form: bare LFs made CRLF can double
 * a body, so smtp-server's count of the bytes received is not enough. Once over the limit
 * (or once smtp-server flags the message as over it) the rest of the data is dropped.
 */
class GuardedNormaliser extends LineEndingNormaliser {
  exceeded = false;
  readonly #source: SMTPServerDataStream;
  readonly headers: MissingHeaders;
  /** Bytes that may still be passed on. */
  #room: number;
  constructor(source: SMTPServerDataStream, headers: MissingHeaders, room: number) {
    super();
    this.#source = source;
    this.headers = headers;
    this.#room = room;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.exceeded || this.#source.sizeExceeded) {
      this.exceeded = true;
      callback();
      return;
    }
    this.#pass(this.headers.take(this.normalise(chunk)));
    callback();
  }
  override _flush(callback: TransformCallback): void {
    if (!this.exceeded) {
      const rest = this.flushPending();
      if (rest) this.#pass(this.headers.take(rest));
      this.#pass(this.headers.end());
    }
    callback();
  }
  #pass(piece: Buffer | null): void {
    if (piece === null || this.exceeded) return;
    this.#room -= piece.length;
    if (this.#room < 0) this.exceeded = true;
    else this.push(piece);
  }
}

/**
 * source → normaliser, settled when both are done or one fails (then the normaliser is
 * destroyed). stream.pipeline would do it too, but it makes an AbortError and a few more
 * errors, stack traces included, for every message it finishes.
 */
async function pipeInto(source: Readable, normaliser: Transform): Promise<void> {
  source.pipe(normaliser);
  try {
    await Promise.all([finished(source), finished(normaliser, { readable: false })]);
  } catch (err: unknown) {
    normaliser.destroy();
    throw err;
  }
}

/**
 * What a transaction that declared SMTPUTF8 asks of delivery: 'needed' when an address or
 * the header (UTF-8 header values, RFC 6532; a header too long to look at counts) is not
 * ASCII, else 'declared'.
 */
function smtpUtf8Need(tx: TransactionState, eightBitHeader: boolean | undefined): 'declared' | 'needed' {
  const utf8 =
    eightBitHeader !== false || isInternationalised(tx.sender) || tx.recipients.some(isInternationalised);
  return utf8 ? 'needed' : 'declared';
}

/** The reply to a message over one of the MIME bounds. */
const OVER_LIMIT: Record<MimeBound, { key: 'HEADER_TOO_BIG' | 'MIME_TOO_COMPLEX'; what: string }> = {
  maxHeaderBytes: { key: 'HEADER_TOO_BIG', what: 'bytes' },
  maxHeaderLines: { key: 'HEADER_TOO_BIG', what: 'lines' },
  maxMimeParts: { key: 'MIME_TOO_COMPLEX', what: 'MIME parts' },
  maxMimeDepth: { key: 'MIME_TOO_COMPLEX', what: 'levels of MIME nesting' },
  maxMimeParameters: {
    key: 'MIME_TOO_COMPLEX',
    what: 'parameters in the Content-Type and Content-Disposition fields of a part',
  },
};

/** A full filesystem or quota gets 452 4.3.1 (mail system full), any other spool failure 451 4.3.0. */
function spoolFailure(err: unknown): 'INSUFFICIENT_STORAGE' | 'SPOOL_FAILED' {
  return isOutOfSpace(err) ? 'INSUFFICIENT_STORAGE' : 'SPOOL_FAILED';
}

/** The result label of sluice_dkim_signatures_total: signed, or why not. */
function dkimResult(outcome: DkimOutcome): string {
  return outcome.signed ? 'signed' : outcome.reason;
}

/** The accepted line's dkim field: who signed, or 'unsigned'. */
function dkimLog(
  outcome: DkimOutcome,
): { domain: string; selector: string; algorithms: string[] } | 'unsigned' {
  return outcome.signed
    ? { domain: outcome.domain, selector: outcome.selector, algorithms: outcome.algorithms }
    : 'unsigned';
}

export async function receiveMessage(options: {
  rt: DataPort;
  handlers: RefusalRecorder;
  state: ConnectionState;
  tx: TransactionState;
  session: SMTPServerSession;
  stream: SMTPServerDataStream;
}): Promise<string> {
  const { rt, handlers, state, tx, session, stream } = options;
  const config = rt.config;
  const queueId = newQueueId();
  const log = state.log.child({ queueId });
  const received = receivedHeader({
    helo: session.hostNameAppearsAs || '',
    clientIp: state.clientIp,
    hostname: config.hostname,
    tls: Boolean(session.secure),
    authenticated: true,
    smtpUtf8: tx.smtpUtf8,
    queueId,
    recipients: tx.recipients,
    date: new Date(),
  });
  // the limit counts the message as it is stored, line ends made CRLF (RFC 1870's count),
  // without the relay's own Received header: a client that sends exactly the advertised
  // SIZE is not refused for the trace field the relay adds
  const normaliser = new GuardedNormaliser(
    stream,
    new MissingHeaders({
      date: () => rfc5322Date(new Date()),
      messageId: () => `<${queueId}@${config.hostname}>`,
      removeBcc: !config.headers.keepBcc,
      // the whole header, so that no Bcc passes: a longer one is refused (maxHeaderBytes)
      holdBytes: config.limits.maxHeaderBytes + 1024,
    }),
    config.limits.maxMessageBytes,
  );
  const scanner = new AttachmentScanner(config.attachments.blockedExtensions, {
    inspectArchives: config.attachments.inspectArchives,
    limits: config.limits,
  });
  // DKIM: signs what is spooled, after the Date or Message-ID the normaliser adds
  const signer = new MessageSigner(rt.dkim ?? NO_DKIM_KEYS, { maxHeaderBytes: config.limits.maxHeaderBytes });
  let writer: SpoolWriter | undefined;
  // the scan and the spool write run side by side on the same stream, so their spans overlap
  state.txSpan?.setAttribute(ATTR.queueId, queueId);
  let inspectSpan: Span | undefined = startSpan(rt.tracer, 'mime.inspect', state.txSpan, {
    [ATTR.queueId]: queueId,
  });
  const endInspect = (result: string, extension?: string) => {
    if (inspectSpan) endSpan(inspectSpan, result, extension ? { 'sluice.mime.extension': extension } : {});
    inspectSpan = undefined;
  };
  let spoolSpan: Span | undefined = startSpan(rt.tracer, 'spool.write', state.txSpan, {
    [ATTR.queueId]: queueId,
  });
  const endSpool = (result: string) => {
    if (spoolSpan) endSpan(spoolSpan, result, { [ATTR.sizeBytes]: writer?.bytes ?? 0 });
    spoolSpan = undefined;
  };

  const refuse = (key: Parameters<RefusalRecorder['refuse']>[2], vars: Record<string, string | number>) => {
    rt.metrics.messagesTotal.inc({
      result: REPLIES[key].code >= 500 ? 'rejected' : 'tempfail',
      reason: REPLIES[key].reason,
    });
    const fields = { sender: tx.sender, recipients: tx.recipients.length };
    return handlers.refuse(state, 'data', key, vars, fields, log);
  };

  try {
    const spoolWriter = rt.spool.createWriter(queueId);
    writer = spoolWriter;
    // listened to from the start: a write can fail (a full disk) while the client is still
    // sending, and an 'error' nobody listens to would be thrown out of the spool's callback
    const written = new Promise<void>((resolve, reject) => {
      spoolWriter.once('finish', resolve).once('error', reject);
    });
    written.catch(() => undefined);
    writer.write(received);
    normaliser.pipe(scanner);
    normaliser.pipe(writer);
    normaliser.pipe(signer);
    const signed = finished(signer);
    signed.catch(() => undefined);
    const scanned: Promise<ScanResult> = scanner.result();
    // awaited below unless the stream fails first
    scanned.then(
      (scan) => endInspect(scan.kind, scan.kind === 'blocked' ? scan.extension : undefined),
      () => endInspect('failed'),
    );
    await pipeInto(stream, normaliser);
    const [scan] = await Promise.all([scanned, written, signed]);

    if (normaliser.exceeded || stream.sizeExceeded) {
      await writer.abort();
      throw refuse('MESSAGE_TOO_BIG', { limit: config.limits.maxMessageBytes });
    }
    if (scan.kind === 'blocked') {
      await writer.abort();
      // the name is the sender's text: it is quoted in the reply, so it holds no quote
      // (replyText escapes control and bidi characters and bounds its length)
      const filename = scan.filename.replace(/"/g, "'");
      throw refuse('BLOCKED_ATTACHMENT', { filename, extension: scan.extension });
    }
    if (scan.kind === 'over-limit') {
      await writer.abort();
      const { key, what } = OVER_LIMIT[scan.bound];
      throw refuse(key, { limit: scan.limit, what });
    }
    if (scan.kind === 'malformed') {
      await writer.abort();
      throw refuse('MALFORMED_MESSAGE', { detail: scan.detail });
    }
    // a span only where something is checked (both checks are off by default)
    const checksSenders = config.senders.headerFrom !== 'off' || config.dmarcPrecheck.action !== 'off';
    const senders: SenderCheckResult = checksSenders
      ? await traced(
          rt.tracer,
          'senders.check',
          state.txSpan,
          { [ATTR.stage]: 'data', [ATTR.queueId]: queueId },
          () =>
            checkSenders({
              config,
              signer,
              user: state.user,
              envelopeSender: tx.sender,
              metrics: rt.metrics,
              log,
              cache: rt.answerCache,
            }),
          (checked) => ({
            [ATTR.result]: checked.refusal ? REPLIES[checked.refusal.key].reason : 'ok',
            ...(checked.dmarc ? { 'sluice.dmarc': Object.values(checked.dmarc).join(',') } : {}),
          }),
        )
      : {};
    if (senders.refusal) {
      await writer.abort();
      throw refuse(senders.refusal.key, senders.refusal.vars);
    }
    const user = state.user;
    if (user) {
      const counted = await traced(
        rt.tracer,
        'ratelimit.check',
        state.txSpan,
        { [ATTR.stage]: 'data', [ATTR.recipients]: tx.recipients.length },
        () => rt.checks.consumeRecipients(user, state.clientIp, tx.recipients.length, tx.mail),
        (r) => describeCheck(r.outcome),
      );
      state.credit = counted.credit;
      const refusal = handlers.checkRefusal(state, 'data', counted.outcome);
      if (refusal) {
        await writer.abort();
        rt.metrics.messagesTotal.inc({ result: 'tempfail', reason: refusal.reason });
        throw refusal;
      }
    }
    const envelope: SpooledEnvelope = {
      version: 1,
      queueId,
      receivedAt: new Date().toISOString(),
      sender: tx.sender,
      recipients: tx.recipients.map((address) => ({
        address,
        state: 'pending',
        ...tx.rcptDsn?.get(address),
      })),
      droppedRecipients: tx.dropped,
      user: state.user?.username ?? '',
      clientIp: state.clientIp,
      clientHelo: session.hostNameAppearsAs || '',
      listener: state.listener,
      tls: Boolean(session.secure),
      size: writer.bytes,
      sessionId: state.sessionId,
      tags: state.tags.length ? [...state.tags] : undefined,
      // everything written went through the normaliser, or is the Received header
      crlfOnly: true,
      ...(tx.smtpUtf8 ? { smtpUtf8: smtpUtf8Need(tx, normaliser.headers.eightBit) } : {}),
      ...(tx.ret ? { ret: tx.ret } : {}),
      ...(tx.envid !== undefined ? { envid: tx.envid } : {}),
      ...(signer.outcome.signed ? { headerPrefix: signer.outcome.header } : {}),
    };
    try {
      await writer.commit(envelope);
      endSpool('committed');
    } catch (err: unknown) {
      log.error({ event: 'spool_error', err }, 'cannot write message to spool');
      endSpool('failed');
      throw refuse(spoolFailure(err), {});
    }
    state.txSpan?.setAttribute(ATTR.sizeBytes, envelope.size);
    state.messages++;
    if (state.user)
      rt.usage?.accepted(state.user.username, { recipients: tx.recipients.length, bytes: envelope.size });
    rt.metrics.messagesTotal.inc({ result: 'accepted', reason: 'accepted' });
    rt.metrics.dkimSignaturesTotal.inc({ result: dkimResult(signer.outcome) });
    rt.metrics.receivedBytesTotal.inc(envelope.size);
    rt.metrics.messageSizeBytes.observe(envelope.size);
    if (normaliser.bareLf) rt.metrics.bareLineEndingsTotal.inc({ kind: 'lf' }, normaliser.bareLf);
    if (normaliser.bareCr) rt.metrics.bareLineEndingsTotal.inc({ kind: 'cr' }, normaliser.bareCr);
    log.info(
      {
        event: 'accepted',
        messageId: normaliser.headers.messageId,
        sender: tx.sender,
        recipients: tx.recipients.length,
        dropped: tx.dropped || undefined,
        size: envelope.size,
        bareLf: normaliser.bareLf || undefined,
        bareCr: normaliser.bareCr || undefined,
        addedHeaders: normaliser.headers.added.length ? normaliser.headers.added : undefined,
        removedBcc: normaliser.headers.removedBcc || undefined,
        dkim: dkimLog(signer.outcome),
        dmarc: senders.dmarc,
      },
      'message queued',
    );
    const spec = REPLIES.MESSAGE_QUEUED;
    return `${spec.enhanced} ${replyText('MESSAGE_QUEUED', { queueId })}`;
  } catch (err: unknown) {
    // a write that failed mid-message (a full disk): the client sent it all and waits
    const writeError = writer?.errored;
    await writer?.abort();
    if ((err as SmtpReplyError).responseCode) {
      endSpool('removed');
      throw err;
    }
    if (writeError) {
      log.error({ event: 'spool_error', err: writeError }, 'cannot write message to spool');
      endSpool('failed');
      throw refuse(spoolFailure(writeError), {});
    }
    endSpool('removed');
    // the client went away mid-DATA (or a stream failed): nothing was acknowledged
    state.closeReason = 'client_disconnected';
    rt.metrics.messagesTotal.inc({ result: 'aborted', reason: 'client_disconnected' });
    log.info({ event: 'aborted', reason: 'client_disconnected', err: String(err) }, 'message aborted');
    throw err;
  } finally {
    endInspect('incomplete');
    normaliser.unpipe();
    if (!scanner.writableFinished) scanner.destroy();
    if (!signer.writableFinished) signer.destroy();
  }
}
