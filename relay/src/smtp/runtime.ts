// What the SMTP front needs from the relay that runs it; Relay provides it.
import type { Authenticator } from '../auth/authenticator.ts';
import type { RelayConfig, UserRecord } from '../config/schema.ts';
import type { DkimKeys } from '../dkim/keys.ts';
import type { AnswerCache } from '../dmarc/precheck.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import type { Tracer } from '../observability/spans.ts';
import type { SharedChecks } from '../policy/shared-checks.ts';
import type { Spool } from '../spool/spool.ts';
import type { Suppression } from '../suppression/suppression-list.ts';
import type { UsageEvents } from '../usage/recorder.ts';
export interface RelayRuntime {
  readonly config: RelayConfig;
  readonly authenticator: Authenticator;
  readonly users: ReadonlyMap<string, UserRecord>;
  readonly spool: Spool;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  readonly checks: SharedChecks;
  readonly draining: boolean;
  /** Usage per user, added up in memory (absent where a runtime is built without it). */
  readonly usage?: UsageEvents | undefined;
  /** Users suspended by abuse detection (abuse.autoSuspend), refused like suspended ones. */
  readonly abuse?: { isSuspended(user: string): boolean } | undefined;
  /** Recipients that bounced and are refused at RCPT (absent: none are). */
  readonly suppression?: { check(address: string): Promise<Suppression | null> } | undefined;
  readonly tracer: Tracer;
  /** DKIM signing keys (absent: nothing is signed). */
  readonly dkim?: DkimKeys | undefined;
  /** The shared state's answer cache (DNS answers of the DMARC pre-check); absent before start. */
  readonly answerCache?: AnswerCache | undefined;
  /** Whether the spool's filesystem has room for a message of `size` bytes and the reserve. */
  spoolRoom(size: number): boolean;
}
