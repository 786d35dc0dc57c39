// What the SMTP front needs from the relay that runs it, as one port per stage: each
// stage of a session is given only what it uses. Relay provides all of them.
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

/** What every stage reports through. */
export interface ObservabilityPort {
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  readonly tracer: Tracer;
  /** Usage per user, added up in memory (absent where a runtime is built without it). */
  readonly usage?: UsageEvents | undefined;
}

/** The accounts as they are now: AUTH and every MAIL FROM look a user up again. */
export interface AccountsPort {
  readonly users: ReadonlyMap<string, UserRecord>;
  /** Users suspended by abuse detection (abuse.autoSuspend), refused like suspended ones. */
  readonly abuse?: { isSuspended(user: string): boolean } | undefined;
}

/** Connect and AUTH: connection slots, the DNSBL verdict, credentials and lockout. */
export interface SessionPort extends ObservabilityPort, AccountsPort {
  readonly config: RelayConfig;
  readonly checks: SharedChecks;
  readonly authenticator: Authenticator;
  readonly draining: boolean;
}

/** MAIL FROM and RCPT TO: sender rules, rates, suppressed recipients, spool room. */
export interface EnvelopePort extends ObservabilityPort, AccountsPort {
  readonly config: RelayConfig;
  readonly checks: SharedChecks;
  /** Recipients that bounced and are refused at RCPT (absent: none are). */
  readonly suppression?: { check(address: string): Promise<Suppression | null> } | undefined;
  /** Whether the spool's filesystem has room for a message of `size` bytes and the reserve. */
  spoolRoom(size: number): boolean;
}

/** DATA: content checks, signing, the DMARC pre-check and the durable spool. */
export interface DataPort extends ObservabilityPort {
  readonly config: RelayConfig;
  readonly checks: SharedChecks;
  readonly spool: Spool;
  /** DKIM signing keys (absent: nothing is signed). */
  readonly dkim?: DkimKeys | undefined;
  /** The shared state's answer cache (DNS answers of the DMARC pre-check); absent before start. */
  readonly answerCache?: AnswerCache | undefined;
}

/** Everything the SMTP front uses: what the listener hands each stage its port from. */
export interface RelayRuntime extends SessionPort, EnvelopePort, DataPort {}
