// The checks that need shared state or DNS: DNSBL, AUTH lockout, rate limits and
// cross-pod connection slots. Each returns a decision for the SMTP handlers (which turn
// it into a reply) and counts what it did; none of them knows about sockets.
import { createHash } from 'node:crypto';
import type { RelayConfig, UserRecord } from '../config/schema.ts';
import type { DnsblVerdict } from '../dnsbl/checker.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import { type StateStore, StateUnavailableError } from '../state/store.ts';
import {
  mailRules,
  messageAndRecipientRules,
  recipientRules,
  type ScopedRule,
  waitText,
  windowName,
} from './rate-rules.ts';

export type CheckOutcome =
  | { kind: 'ok' }
  | { kind: 'rate_limited'; vars: Record<string, string | number> }
  | { kind: 'locked'; retry: string }
  | { kind: 'unavailable' };

export interface MailAllowance {
  outcome: CheckOutcome;
  /** Recipients this message may still have under every recipient limit. */
  recipients: number;
  /** False when the message was not counted at MAIL FROM: consumeRecipients counts it. */
  counted: boolean;
  /** What the store said is left after this message (message limits; recipients as read). */
  credit?: Credit;
}

/**
 * What a session's last rate-limit consume said is left: messages under its tightest
 * message limit, recipients under its tightest recipient limit. Usage only goes down as
 * windows move on, so it can only understate what is left, except for what other
 * sessions (other pods) use meanwhile; the next consume is atomic and catches that.
 */
export interface Credit {
  messages: number;
  recipients: number;
}

export interface RecipientsOutcome {
  outcome: CheckOutcome;
  /** For the session's next MAIL FROM; undefined when it must ask the store. */
  credit?: Credit;
}

/** The smallest remaining count among the rules of one kind (Infinity when there are none). */
function left(
  rules: readonly ScopedRule[],
  remaining: readonly number[],
  what: 'messages' | 'recipients',
): number {
  return Math.min(
    Number.POSITIVE_INFINITY,
    ...rules.flatMap((r, i) => (r.limitSpec.what === what ? [remaining[i] ?? 0] : [])),
  );
}

export interface DnsblSource {
  check(ip: string): Promise<DnsblVerdict>;
}

/**
 * The username as a state-store key part: a digest, so that a name given to AUTH (which
 * may be a password typed into the wrong field, or text of any length) never sits in the
 * shared state in clear, and every key stays short.
 */
const userKey = (user: string) => createHash('sha256').update(user).digest('base64url');

const lockKeys = (user: string, ip: string) => [`lock:auth:user:${userKey(user)}`, `lock:auth:ip:${ip}`];

export class SharedChecks {
  readonly #store: StateStore;
  readonly #metrics: RelayMetrics;
  readonly #logger: Logger;
  readonly #config: () => RelayConfig;
  readonly #now: () => number;
  #dnsbl: DnsblSource | undefined;

  constructor(options: {
    store: StateStore;
    dnsbl?: DnsblSource;
    metrics: RelayMetrics;
    logger: Logger;
    config: () => RelayConfig;
    now?: () => number;
  }) {
    this.#store = options.store;
    this.#dnsbl = options.dnsbl;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#config = options.config;
    this.#now = options.now ?? Date.now;
  }

  set dnsbl(source: DnsblSource | undefined) {
    this.#dnsbl = source;
  }

  /** Counts a store call by operation, so benchmarks can report round trips per message. */
  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#metrics.stateOperationsTotal.inc({ op });
    try {
      return await fn();
    } catch (err: unknown) {
      this.#metrics.stateErrorsTotal.inc({ op });
      throw err;
    }
  }

  /** Whether clients are checked against DNSBLs (dnsbl.enabled, read on each use): decided here only. */
  dnsblEnabled(): boolean {
    return this.#config().dnsbl.enabled;
  }

  /** The DNSBL verdict, or undefined when DNSBL checks are off. */
  async dnsblVerdict(ip: string): Promise<DnsblVerdict | undefined> {
    if (!this.dnsblEnabled() || !this.#dnsbl) return undefined;
    return this.#dnsbl.check(ip);
  }

  async acquireConnection(ip: string, sessionId: string): Promise<CheckOutcome> {
    const config = this.#config();
    const limit = config.rateLimits.concurrentConnectionsPerIp;
    const ttl = (config.limits.sessionTimeoutSeconds + 60) * 1000;
    try {
      const ok = await this.#call('acquire_slot', () =>
        this.#store.acquireSlot(`conn:ip:${ip}`, sessionId, limit, ttl, this.#now()),
      );
      if (ok) return { kind: 'ok' };
      this.#metrics.rateLimitHitsTotal.inc({ scope: 'ip', what: 'connections' });
      return {
        kind: 'rate_limited',
        vars: { limit, what: 'connections', window: 'moment', scope: 'IP address', retry: 'a moment' },
      };
    } catch (err: unknown) {
      return this.#unavailable(err);
    }
  }

  async releaseConnection(ip: string, sessionId: string): Promise<void> {
    await this.#call('release_slot', () => this.#store.releaseSlot(`conn:ip:${ip}`, sessionId)).catch(
      () => undefined, // the slot expires by itself
    );
  }

  async authLocked(username: string, ip: string): Promise<CheckOutcome> {
    try {
      const left = await this.#call('lock_check', () => this.#store.lockRemaining(lockKeys(username, ip)));
      const wait = Math.max(...left);
      return wait > 0 ? { kind: 'locked', retry: waitText(wait) } : { kind: 'ok' };
    } catch (err: unknown) {
      return this.#unavailable(err);
    }
  }

  /** Counts a failed AUTH; `logFields` say how the username is logged (see authUserFields). */
  async recordAuthFailure(
    username: string,
    ip: string,
    log: Logger,
    logFields: Record<string, string> = { user: username },
  ): Promise<void> {
    const l = this.#config().authLockout;
    const [userLock, ipLock] = lockKeys(username, ip) as [string, string];
    const common = { windowMs: l.windowSeconds * 1000, cooldownMs: l.cooldownSeconds * 1000 };
    try {
      const locked = await this.#call('auth_failure', () =>
        this.#store.recordFailure(
          [
            {
              counterKey: `fail:auth:user:${userKey(username)}`,
              lockKey: userLock,
              threshold: l.maxFailuresPerUser,
              ...common,
            },
            { counterKey: `fail:auth:ip:${ip}`, lockKey: ipLock, threshold: l.maxFailuresPerIp, ...common },
          ],
          this.#now(),
        ),
      );
      (['user', 'ip'] as const).forEach((scope, i) => {
        if (!locked[i]) return;
        this.#metrics.authLockoutsTotal.inc({ scope });
        log.warn(
          { event: 'auth_lockout', scope, ...logFields, cooldownSeconds: l.cooldownSeconds },
          `AUTH locked for this ${scope}`,
        );
      });
    } catch (err: unknown) {
      this.#unavailable(err);
    }
  }

  /**
   * At MAIL FROM: whether every message limit has room for one more message, and the
   * recipient allowance. Nothing is counted here: the end of DATA counts the message with
   * its recipients once it is accepted (consumeRecipients), so a transaction that is reset
   * or refused uses up no limit. With a credit that still has room, no store call.
   */
  async allowMail(user: UserRecord, ip: string, credit?: Credit): Promise<MailAllowance> {
    const config = this.#config();
    const rules = mailRules(config, user, ip);
    if (rules.length === 0) {
      return { outcome: { kind: 'ok' }, recipients: Number.POSITIVE_INFINITY, counted: true };
    }
    if (credit && credit.messages >= 1) {
      return { outcome: { kind: 'ok' }, recipients: credit.recipients, counted: false };
    }
    try {
      const read = await this.#call('consume', () => this.#store.consume(rules, this.#now()));
      const recipients = left(rules, read.remaining, 'recipients');
      if (left(rules, read.remaining, 'messages') >= 1) {
        return { outcome: { kind: 'ok' }, recipients, counted: false };
      }
      // no room: asking for one message says which limit and when it has room again, and
      // counts nothing when it is refused
      const one = messageAndRecipientRules(config, user, ip, 0);
      const decision = await this.#call('consume', () => this.#store.consume(one, this.#now()));
      if (!decision.allowed) {
        const outcome = this.#limited(one, decision.blockedBy ?? 0, decision.retryAfterMs);
        return { outcome, recipients: 0, counted: true };
      }
      // room came free in between, and this message has now been counted
      const messages = left(one, decision.remaining, 'messages');
      return { outcome: { kind: 'ok' }, recipients, counted: true, credit: { messages, recipients } };
    } catch (err: unknown) {
      return { outcome: this.#unavailable(err), recipients: 0, counted: true };
    }
  }

  /**
   * At end of DATA: the message's recipients against every recipient limit, and the
   * message itself when MAIL FROM did not count it. Returns the session's new credit.
   */
  async consumeRecipients(
    user: UserRecord,
    ip: string,
    count: number,
    mail: Pick<MailAllowance, 'counted' | 'credit'> = { counted: true },
  ): Promise<RecipientsOutcome> {
    const config = this.#config();
    const rules = mail.counted
      ? recipientRules(config, user, ip, count)
      : messageAndRecipientRules(config, user, ip, count);
    if (rules.length === 0)
      return { outcome: { kind: 'ok' }, ...(mail.credit ? { credit: mail.credit } : {}) };
    try {
      const decision = await this.#call('consume', () => this.#store.consume(rules, this.#now()));
      if (!decision.allowed) {
        return { outcome: this.#limited(rules, decision.blockedBy ?? 0, decision.retryAfterMs) };
      }
      const recipients = left(rules, decision.remaining, 'recipients');
      const messages = mail.counted
        ? (mail.credit?.messages ?? 0)
        : left(rules, decision.remaining, 'messages');
      return { outcome: { kind: 'ok' }, credit: { messages, recipients } };
    } catch (err: unknown) {
      return { outcome: this.#unavailable(err) };
    }
  }

  /** The RCPT past a recipient allowance read at MAIL FROM. */
  recipientLimited(user: UserRecord, ip: string): CheckOutcome {
    const rules = mailRules(this.#config(), user, ip);
    const index = rules.findIndex((r) => r.limitSpec.what === 'recipients');
    return this.#limited(rules, Math.max(0, index), 0);
  }

  #limited(rules: readonly ScopedRule[], index: number, retryAfterMs: number): CheckOutcome {
    const rule = rules[index];
    if (!rule) return { kind: 'ok' };
    this.#metrics.rateLimitHitsTotal.inc({ scope: rule.scope, what: rule.limitSpec.what });
    return {
      kind: 'rate_limited',
      vars: {
        limit: rule.limit,
        what: rule.limitSpec.what,
        window: windowName(rule.limitSpec.windowSeconds),
        scope: rule.scope === 'user' ? 'account' : 'IP address',
        retry: retryAfterMs > 0 ? waitText(retryAfterMs) : 'a while',
      },
    };
  }

  #unavailable(err: unknown): CheckOutcome {
    if (err instanceof StateUnavailableError) return { kind: 'unavailable' };
    // a store that fails in another way: say so once per call site and let mail through
    this.#logger.error({ event: 'state_error', err }, 'shared state call failed');
    return { kind: 'ok' };
  }
}
