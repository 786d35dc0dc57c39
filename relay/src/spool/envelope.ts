// What the spool keeps next to each message body. Recipients carry their own state so
// that delivery (a later stage) records each outcome and never re-sends to a recipient
// that already got the message.

export type RecipientState = 'pending' | 'delivered' | 'deferred' | 'bounced';

export interface SpooledRecipient {
  address: string;
  state: RecipientState;
}

export interface SpooledEnvelope {
  version: 1;
  queueId: string;
  receivedAt: string;
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
}
