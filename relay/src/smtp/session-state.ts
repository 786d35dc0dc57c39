// Per-connection and per-transaction state are separate objects: a connection holds
// many transactions, and nothing of one transaction may leak into the next.
import type { UserRecord } from '../config/schema.ts';
import type { DnsblVerdict } from '../dnsbl/checker.ts';
import type { Logger } from '../observability/logger.ts';
import type { Span } from '../observability/spans.ts';
import type { MailAllowance } from '../policy/shared-checks.ts';
import type { DsnNotify } from '../spool/envelope.ts';
import type { Suppression } from '../suppression/suppression-list.ts';

export interface TransactionState {
  sender: string;
  /** MAIL FROM declared SMTPUTF8: addresses may be internationalised (RFC 6531). */
  smtpUtf8: boolean;
  /** Recipients that will be delivered (the first maxRecipients). */
  recipients: string[];
  /** Recipients accepted with 250 and dropped (truncate mode). */
  dropped: number;
  /** Recipients the rate limits still allow for this message (read at MAIL FROM). */
  allowance: number;
  /** Whether MAIL FROM counted the message, and what the store said was left then. */
  mail: Pick<MailAllowance, 'counted' | 'credit'>;
  /** DSN (RFC 3461) from MAIL FROM: what a failure notice returns, and the envelope id. */
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** DSN from each RCPT that gave NOTIFY or ORCPT, by the recipient as kept. */
  rcptDsn?: Map<string, { notify?: DsnNotify[]; orcpt?: string }>;
}

export interface ConnectionState {
  sessionId: string;
  listener: string;
  clientIp: string;
  openedAt: number;
  log: Logger;
  /** Counted in the open-connections gauge (the caps themselves are ConnectionSlots'). */
  counted: boolean;
  /** Holds a cross-pod connection slot in the state store (released on close). */
  slot: boolean;
  /** DNSBL verdict started after AUTH (checkAt: auth), enforced at MAIL FROM. */
  dnsbl?: Promise<DnsblVerdict | undefined>;
  /** Tags from DNSBL zones with action tag, carried into the envelope. */
  tags: string[];
  user?: UserRecord;
  /** What the last rate-limit consume said is left (lets MAIL FROM skip the store). */
  credit?: MailAllowance['credit'];
  tx?: TransactionState;
  /** Suppression lookups made for a pipelined batch of RCPTs before they are handled. */
  suppressionAhead?: Map<string, Promise<Suppression | null>>;
  messages: number;
  rejections: number;
  closeReason?: string;
  /** smtp.session: connect to close. */
  span: Span;
  /** smtp.transaction: MAIL FROM to the end of DATA (or a refusal, or abandoned). */
  txSpan?: Span;
}
