// What the spool keeps next to each message body. Recipients carry their own state so
// that delivery records each outcome as it happens and a retry never re-sends to a
// recipient that already got the message.

export type RecipientState = 'pending' | 'delivered' | 'deferred' | 'bounced';

/** RFC 3461 NOTIFY values: NEVER alone, or any of the other three. */
export type DsnNotify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface SpooledRecipient {
  address: string;
  state: RecipientState;
  /** Delivery attempts for this recipient so far. */
  attempts?: number;
  /** The last answer (SMTP reply or local error), e.g. "550 5.1.1 no such user". */
  response?: string;
  /** RFC 3463 status of the last answer, e.g. 5.1.1; local failures use 4.4.x/5.4.x. */
  status?: string;
  /** The host that gave the last answer. */
  remoteHost?: string;
  /** What the last answer means, one of delivery/reply-class.ts's classes (invalid-recipient, …). */
  class?: string;
  /** When the recipient reached its final state (ISO time). */
  finishedAt?: string;
  /**
   * A bounced recipient whose bounce notice has been queued (or was not wanted: NOTIFY);
   * a delivered one whose "relayed" notice has been (NOTIFY=SUCCESS).
   */
  notified?: boolean;
  /** NOTIFY from the client's RCPT (RFC 3461 4.1); absent: failures and delays are reported. */
  notify?: DsnNotify[];
  /** ORCPT from the client's RCPT (RFC 3461 4.2), "addr-type;address", xtext decoded. */
  orcpt?: string;
  /** The next hop took this recipient's DSN request (it offered DSN): it reports success now. */
  dsnPassed?: boolean;
}

/**
 * Whether a recipient's NOTIFY asks for this notice. Without NOTIFY a relay reports
 * failures and delays but not success (RFC 3461 4.1).
 */
export function wantsNotice(recipient: SpooledRecipient, kind: 'failed' | 'delayed' | 'relayed'): boolean {
  const value = kind === 'failed' ? 'FAILURE' : kind === 'delayed' ? 'DELAY' : 'SUCCESS';
  if (recipient.notify === undefined) return value !== 'SUCCESS';
  return recipient.notify.includes(value);
}

export interface SpooledEnvelope {
  version: 1;
  queueId: string;
  receivedAt: string;
  /** Envelope sender; '' is the null reverse-path (a bounce, which is never bounced). */
  sender: string;
  recipients: SpooledRecipient[];
  /** Recipients accepted with 250 but dropped by the truncate overflow mode. */
  droppedRecipients: number;
  user: string;
  clientIp: string;
  clientHelo: string;
  listener: string;
  tls: boolean;
  size: number;
  sessionId: string;
  /** Marks from checks that only tag (e.g. dnsbl:zone for a tag-only DNSBL listing). */
  tags?: string[] | undefined;
  /** Delivery attempts of the message so far. */
  attempts?: number;
  /** When the next attempt is due (ISO time); absent means now. */
  nextAttemptAt?: string;
  /** A delay notice has been sent to the sender. */
  delayWarned?: boolean;
  /** This message is a delivery status notification made by this relay. */
  dsn?: boolean;
  /** RET from the client's MAIL FROM (RFC 3461 4.3): what a failure notice returns. */
  ret?: 'FULL' | 'HDRS';
  /** ENVID from the client's MAIL FROM (RFC 3461 4.4), xtext decoded: put in every notice. */
  envid?: string;
  /**
   * The body was spooled through the line-end normaliser: CRLF only, no bare CR or LF,
   * so delivery need not look for them again. Absent (older spools): delivery checks.
   */
  crlfOnly?: boolean;
  /**
   * Header fields sent in front of the spooled bytes (CRLF-ended): the DKIM-Signature, which
   * covers the whole message and so is only known once it has been written.
   */
  headerPrefix?: string;
  /**
   * SMTPUTF8 (RFC 6531): 'declared' when the client's MAIL FROM declared it, 'needed' when
   * it did and the message has UTF-8 in an address or its header. Delivery asks the next
   * hop for SMTPUTF8 either way where it is offered; a 'needed' message does not go to a
   * next hop that does not offer it.
   */
  smtpUtf8?: 'declared' | 'needed';
}

/** A copy that shares nothing mutable with the original (cheaper than structuredClone). */
export function copyEnvelope(envelope: SpooledEnvelope): SpooledEnvelope {
  return {
    ...envelope,
    recipients: envelope.recipients.map((r) => ({ ...r })),
    ...(envelope.tags ? { tags: [...envelope.tags] } : {}),
  };
}
