// What the spool keeps next to each message body. Recipients carry their own state so
// that delivery records each outcome as it happens and a retry never re-sends to a
// recipient that already got the message.

export type RecipientState = 'pending' | 'delivered' | 'deferred' | 'bounced';

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
  /** When the recipient reached its final state (ISO time). */
  finishedAt?: string;
  /** A bounced recipient whose bounce notice has been queued. */
  notified?: boolean;
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
  /**
   * The body was spooled through the line-end normaliser: CRLF only, no bare CR or LF,
   * so delivery need not look for them again. Absent (older spools): delivery checks.
   */
  crlfOnly?: boolean;
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
