// Per-connection and per-transaction state are separate objects: a connection holds
// many transactions, and nothing of one transaction may leak into the next.
import type { UserRecord } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';

export interface TransactionState {
  sender: string;
  /** Recipients that will be delivered (the first maxRecipients). */
  recipients: string[];
  /** Recipients accepted with 250 and dropped (truncate mode). */
  dropped: number;
}

export interface ConnectionState {
  sessionId: string;
  listener: string;
  clientIp: string;
  openedAt: number;
  log: Logger;
  /** Counted against the connection caps (released on close). */
  counted: boolean;
  user?: UserRecord;
  tx?: TransactionState;
  messages: number;
  rejections: number;
  closeReason?: string;
}
