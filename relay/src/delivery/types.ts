// The seam between the queue and delivery: the transports that send mail onward and the
// notices (bounces, delay warnings) written back into the spool. The queue imports these;
// nothing here imports the queue.
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import type { ReplyClass } from '../wire/reply-classes.ts';
import type { DsnAction } from './dsn.ts';

/** One connection's worth of work: a message to some recipients of one destination. */
export interface DeliveryJob {
  queueId: string;
  /** Envelope sender ('' for a bounce). */
  sender: string;
  /** Recipients, all of one domain (direct mode) or any (smarthost mode). */
  recipients: string[];
  /** The destination domain (direct mode) or the smarthost name. */
  domain: string;
  /** The message body in the spool: not dot-stuffed. */
  bodyPath: string;
  /**
   * The same bytes still in memory (SpooledMessage.body), on a just-received message's
   * first attempt; absent: read them from bodyPath.
   */
  body?: readonly Buffer[];
  size: number;
  /** The body is known to have CRLF line ends only (SpooledEnvelope.crlfOnly). */
  crlfOnly?: boolean;
  /** Header fields sent before the spooled bytes (SpooledEnvelope.headerPrefix). */
  headerPrefix?: string;
  /** SMTPUTF8 declared by the client, or needed by the message (SpooledEnvelope.smtpUtf8). */
  smtpUtf8?: 'declared' | 'needed';
  /** The client's DSN request (RFC 3461), passed on to a next hop that offers DSN. */
  dsn?: JobDsn;
}

export interface JobDsn {
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** NOTIFY and ORCPT of the recipients that gave them. */
  recipients: Record<string, { notify?: readonly string[]; orcpt?: string }>;
}

export type RecipientOutcome = 'delivered' | 'deferred' | 'bounced';

export interface RecipientResult {
  address: string;
  outcome: RecipientOutcome;
  /** The answer as the sender should read it: "250 2.0.0 Ok", "550 5.1.1 no such user", or a local error. */
  response: string;
  /** RFC 3463 status: from the reply's enhanced code, else derived from the reply code. */
  status: string;
  /** The host that answered (MX or smarthost name), when one did. */
  remoteHost?: string;
  /** The connection's addresses when a host answered: the server's and this relay's (the egress address). */
  remoteAddress?: string;
  localAddress?: string;
  /** Why it failed before or without a transaction (null_mx, dns_tempfail, tls_failed, …), for the log. */
  reason?: string;
  /** The next hop offered DSN and was given this recipient's DSN request (RFC 3461). */
  dsnPassed?: boolean;
  /** What the answer means (reply-class.ts); the transport sets it. */
  class?: ReplyClass;
}

export interface Transport {
  /** Sends the job; resolves with one result per recipient, never rejects. */
  deliver(job: DeliveryJob): Promise<RecipientResult[]>;
  /** Closes pooled connections. */
  close(): Promise<void>;
}

/** A bounce or delay notice the queue asks for (delivery/bounce.ts writes it into the spool). */
export interface DsnRequest {
  envelope: SpooledEnvelope;
  recipients: SpooledRecipient[];
  action: DsnAction;
  bodyPath: string;
}
