// End of the SMTP transaction: stream DATA through the smuggling defence into the
// attachment scanner, the DKIM signer and the spool at once (message-intake.ts; never
// buffering the message), then decide.
// The message is acknowledged only after the spool has it on disk; every refusal
// removes what was written.
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { RelayConfig } from '../config/schema.ts';
import { type DkimKeys, NO_DKIM_KEYS } from '../dkim/keys.ts';
import { dkimLabels, dkimLogField } from '../dkim/outcome-labels.ts';
import { MessageSigner } from '../dkim/signer.ts';
import type { AnswerCache } from '../dmarc/precheck.ts';
import { AttachmentScanner, type ScanResult } from '../mime/attachment-scan.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import { ATTR, endSpan, type Span, startSpan, type Tracer, traced } from '../observability/spans.ts';
import { decideContent } from '../policy/content-decision.ts';
import type { SharedChecks } from '../policy/shared-checks.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { isOutOfSpace } from '../spool/free-space.ts';
import { newQueueId } from '../spool/queue-id.ts';
import type { Spool, SpoolWriter } from '../spool/spool.ts';
import type { UsageEvents } from '../usage/recorder.ts';
import { rfc5322Date } from '../wire/date.ts';
import { isInternationalised } from '../wire/smtputf8.ts';
import { MessageIntake } from './message-intake.ts';
import { MissingHeaders } from './missing-headers.ts';
import { receivedHeader } from './received-header.ts';
import type { RefusalRecorder } from './refusals.ts';
import { REPLIES, replyText, type SmtpReplyError } from './replies.ts';
import { checkSenders, type SenderCheckResult } from './sender-checks.ts';
import type { ConnectionState, TransactionState } from './session-state.ts';
import { describeCheck } from './session-trace.ts';

/** DATA: content checks, signing, the DMARC pre-check and the durable spool. */
export interface DataPort {
  readonly config: RelayConfig;
  readonly checks: Pick<SharedChecks, 'consumeRecipients'>;
  readonly spool: Pick<Spool, 'createWriter'>;
  /** DKIM signing keys (absent: nothing is signed). */
  readonly dkim?: DkimKeys | undefined;
  /** The shared state's answer cache (DNS answers of the DMARC pre-check); absent before start. */
  readonly answerCache?: AnswerCache | undefined;
  readonly metrics: RelayMetrics;
  readonly tracer: Tracer;
  /** Usage per user, added up in memory (absent where a runtime is built without it). */
  readonly usage?: Pick<UsageEvents, 'accepted'> | undefined;
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

/** A full filesystem or quota gets 452 4.3.1 (mail system full), any other spool failure 451 4.3.0. */
function spoolFailure(err: unknown): 'INSUFFICIENT_STORAGE' | 'SPOOL_FAILED' {
  return isOutOfSpace(err) ? 'INSUFFICIENT_STORAGE' : 'SPOOL_FAILED';
}

export async function receiveMessage(options: {
  rt: DataPort;
  refusals: RefusalRecorder;
  state: ConnectionState;
  tx: TransactionState;
  session: SMTPServerSession;
  stream: SMTPServerDataStream;
}): Promise<string> {
  const { rt, refusals, state, tx, session, stream } = options;
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
  const scanner = new AttachmentScanner(config.attachments.blockedExtensions, {
    inspectArchives: config.attachments.inspectArchives,
    limits: config.limits,
  });
  // DKIM: signs what is spooled, after the Date or Message-ID the intake adds
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
    return refusals.refuse(state, 'data', key, vars, fields, log);
  };

  /** When the client's data ended, and how the reply went: for sluice_smtp_data_reply_seconds. */
  let dataEnded: number | undefined;
  let replied: 'accepted' | 'rejected' | 'tempfail' | undefined;

  try {
    writer = rt.spool.createWriter(queueId);
    // the limit counts the message as it is stored, line ends made CRLF (RFC 1870's count),
    // without the relay's own Received header: a client that sends exactly the advertised
    // SIZE is not refused for the trace field the relay adds
    const intake = new MessageIntake(
      stream,
      new MissingHeaders({
        date: () => rfc5322Date(new Date()),
        messageId: () => `<${queueId}@${config.hostname}>`,
        removeBcc: !config.headers.keepBcc,
        // the whole header, so that no Bcc passes: a longer one is refused (maxHeaderBytes)
        holdBytes: config.limits.maxHeaderBytes + 1024,
      }),
      config.limits.maxMessageBytes,
      { writer, scanner, signer },
    );
    writer.write(received);
    const scanned: Promise<ScanResult> = scanner.result();
    // awaited below unless the stream fails first
    scanned.then(
      (scan) => endInspect(scan.kind, scan.kind === 'blocked' ? scan.extension : undefined),
      () => endInspect('failed'),
    );
    await intake.run();
    dataEnded = performance.now();
    // a write can fail (a full disk) while the client is still sending: told once it is done
    await writer.drained();
    if (writer.errored !== null) throw writer.errored;
    const scan = await scanned;

    const content = decideContent({ overSize: intake.exceeded || stream.sizeExceeded, scan }, config.limits);
    if (content.kind === 'refuse') {
      await writer.abort();
      throw refuse(content.refusal, content.vars);
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
      const refusal = refusals.checkRefusal(state, 'data', counted.outcome);
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
      // everything written went through the intake's normaliser, or is the Received header
      crlfOnly: true,
      ...(tx.smtpUtf8 ? { smtpUtf8: smtpUtf8Need(tx, intake.headers.eightBit) } : {}),
      ...(tx.ret ? { ret: tx.ret } : {}),
      ...(tx.envid !== undefined ? { envid: tx.envid } : {}),
      ...(signer.outcome.signed ? { headerPrefix: signer.outcome.header } : {}),
    };
    try {
      const committing = performance.now();
      await writer.commit(envelope);
      rt.metrics.spoolCommitSeconds.observe((performance.now() - committing) / 1000);
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
    rt.metrics.dkimSignaturesTotal.inc(dkimLabels(signer.outcome, rt.dkim ?? NO_DKIM_KEYS, config.senders));
    rt.metrics.receivedBytesTotal.inc(envelope.size);
    rt.metrics.messageSizeBytes.observe(envelope.size);
    if (intake.normaliser.bareLf)
      rt.metrics.bareLineEndingsTotal.inc({ kind: 'lf' }, intake.normaliser.bareLf);
    if (intake.normaliser.bareCr)
      rt.metrics.bareLineEndingsTotal.inc({ kind: 'cr' }, intake.normaliser.bareCr);
    log.info(
      {
        event: 'accepted',
        messageId: intake.headers.messageId,
        sender: tx.sender,
        recipients: tx.recipients.length,
        dropped: tx.dropped || undefined,
        size: envelope.size,
        bareLf: intake.normaliser.bareLf || undefined,
        bareCr: intake.normaliser.bareCr || undefined,
        addedHeaders: intake.headers.added.length ? intake.headers.added : undefined,
        removedBcc: intake.headers.removedBcc || undefined,
        dkim: dkimLogField(signer.outcome),
        dmarc: senders.dmarc,
      },
      'message queued',
    );
    const spec = REPLIES.MESSAGE_QUEUED;
    replied = 'accepted';
    return `${spec.enhanced} ${replyText('MESSAGE_QUEUED', { queueId })}`;
  } catch (err: unknown) {
    // a write that failed mid-message (a full disk): the client sent it all and waits
    const writeError = writer?.errored;
    await writer?.abort();
    const code = (err as SmtpReplyError).responseCode;
    if (code) {
      replied = code >= 500 ? 'rejected' : 'tempfail';
      endSpool('removed');
      throw err;
    }
    if (writeError) {
      log.error({ event: 'spool_error', err: writeError }, 'cannot write message to spool');
      endSpool('failed');
      replied = 'tempfail';
      throw refuse(spoolFailure(writeError), {});
    }
    endSpool('removed');
    // the client went away mid-DATA (or a stream failed): nothing was acknowledged
    state.closeReason = 'client_disconnected';
    rt.metrics.messagesTotal.inc({ result: 'aborted', reason: 'client_disconnected' });
    log.info({ event: 'aborted', reason: 'client_disconnected', err: String(err) }, 'message aborted');
    throw err;
  } finally {
    if (dataEnded !== undefined && replied !== undefined)
      rt.metrics.dataReplySeconds.observe({ result: replied }, (performance.now() - dataEnded) / 1000);
    endInspect('incomplete');
    if (!scanner.writableFinished) scanner.destroy();
  }
}
