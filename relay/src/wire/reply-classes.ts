// The closed set of classes every answer of a delivery attempt is put in (delivery/reply-class.ts):
// the words config, metrics, logs, DSNs (X-Sluice-Class), the spool's envelope, usage
// reports, abuse detection and suppression share.
export const REPLY_CLASSES = [
  /** 2xx: the next hop took the message. */
  'accepted',
  'invalid-recipient',
  'bad-domain',
  'mailbox-full',
  'inactive-mailbox',
  /** The sending IP or domain is on a blocklist or blocked by the receiver. */
  'spam-block',
  /** This message's content looked like spam or malware. */
  'spam-content',
  /** A receiver's local policy (relaying, forwarding, a rule of theirs). */
  'policy',
  /** The receiver wants SPF, DKIM or DMARC to pass (or our AUTH at a smarthost failed). */
  'auth-required',
  /** Poor reputation of the sending IP or domain, without a blocklist named. */
  'reputation',
  /** The receiver throttles us: slow down, try later. Never bounced. */
  'rate-limited',
  'message-too-large',
  /** No way to the destination: DNS, connections, addresses the relay does not deliver to. */
  'routing',
  'tls',
  /** A temporary failure with no more specific reason (greylisting, busy, local trouble). */
  'transient',
  'other',
] as const;

export type ReplyClass = (typeof REPLY_CLASSES)[number];
