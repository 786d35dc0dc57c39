// The RCPT TO stage: asks policy/rcpt-decision.ts about the recipient (parameters, the
// recipient limit, the rate limits' allowance), then checks the suppression list and
// keeps the recipient with its DSN parameters.
// smtp-server hands over a pipelined batch of RCPTs one at a time, each after the last was
// answered, so one suppression lookup per RCPT was a Redis round trip each and their 250s
// left in separate writes. When a batch arrives, the parser names its recipients ahead
// (`ahead`): they are looked up in one store call, and each RCPT takes its answer from it.
import type { SMTPServerAddress } from 'smtp-server';
import type { RelayConfig } from '../../config/schema.ts';
import type { RelayMetrics } from '../../observability/metrics.ts';
import { decideRcpt } from '../../policy/rcpt-decision.ts';
import type { SharedChecks } from '../../policy/shared-checks.ts';
import type { DsnNotify } from '../../spool/envelope.ts';
import type { Suppression } from '../../suppression/suppression-list.ts';
import { badDsnValue, RCPT_PARAMETERS, recipientAddress, unsupportedParameter } from '../parameters.ts';
import type { RefusalRecorder } from '../refusals.ts';
import type { SmtpReplyError } from '../replies.ts';
import type { ConnectionState } from '../session-state.ts';
import type { StageResult } from './stage.ts';

export interface RcptPort {
  readonly config: Pick<RelayConfig, 'hostname' | 'postmaster' | 'limits'>;
  readonly checks: Pick<SharedChecks, 'recipientLimited'>;
  /** Recipients that bounced and are refused at RCPT (absent: none are). */
  readonly suppression?:
    | {
        check(address: string): Promise<Suppression | null>;
        checkMany(addresses: readonly string[]): Promise<Array<Suppression | null>>;
      }
    | undefined;
  readonly metrics: Pick<RelayMetrics, 'recipientsTotal'>;
}

/** The most recipients of one batch looked up ahead (a larger batch's others alone). */
export const MAX_AHEAD = 100;

export class RcptStage {
  readonly #port: RcptPort;
  readonly #refusals: RefusalRecorder;

  constructor(port: RcptPort, refusals: RefusalRecorder) {
    this.#port = port;
    this.#refusals = refusals;
  }

  /**
   * The recipients of RCPT commands that arrived together, before they are handled: their
   * suppressions are looked up in one call. Only for an authenticated session (nothing
   * else reaches RCPT); an address that differs from what RCPT parses is looked up alone.
   * Called with none when the batch has been handled: lookups never outlive their batch.
   */
  ahead(state: ConnectionState | undefined, addresses: readonly string[]): void {
    if (!state) return;
    delete state.suppressionAhead;
    const suppression = this.#port.suppression;
    if (!state.user || !suppression || addresses.length < 2) return;
    const fields = [...new Set(addresses.slice(0, MAX_AHEAD).map((a) => a.toLowerCase()))];
    const answers = suppression.checkMany(fields);
    const lookups = new Map<string, Promise<Suppression | null>>();
    fields.forEach((field, i) => {
      const answer = answers.then((all) => all[i] ?? null);
      answer.catch(() => undefined); // the RCPT that takes it reports a failure; others are dropped
      lookups.set(field, answer);
    });
    state.suppressionAhead = lookups;
  }

  rcptTo(state: ConnectionState | undefined, address: SMTPServerAddress): StageResult {
    const tx = state?.tx;
    if (!state || !tx) return this.#refusals.refuse(state, 'rcpt', 'AUTH_REQUIRED');
    const port = this.#port;
    const rcpt = recipientAddress(address.address, port.config);
    if (rcpt !== address.address) {
      state.log.info(
        { event: 'postmaster', recipient: rcpt },
        'RCPT TO:<postmaster> goes to the postmaster address',
      );
    }
    const orcpt = address.dsn?.orcpt;
    const decision = decideRcpt({
      recipient: rcpt,
      unsupportedParameter: unsupportedParameter(address, RCPT_PARAMETERS),
      badOrcpt: orcpt === undefined ? undefined : badDsnValue('ORCPT', orcpt),
      smtpUtf8: tx.smtpUtf8,
      accepted: tx.recipients,
      limits: port.config.limits,
      allowance: tx.allowance,
    });
    switch (decision.kind) {
      case 'refuse':
        if (decision.countsRecipient) port.metrics.recipientsTotal.inc({ result: 'rejected' });
        return this.#refusals.refuse(state, 'rcpt', decision.refusal, decision.vars, { recipient: rcpt });
      case 'repeat':
        // smtp-server replaces a repeated RCPT in the envelope; it is counted once here too
        return undefined;
      case 'drop':
        tx.dropped++;
        port.metrics.recipientsTotal.inc({ result: 'dropped' });
        return undefined;
      case 'rate_limited':
        if (state.user) {
          port.metrics.recipientsTotal.inc({ result: 'rejected' });
          return this.#refusals.checkRefusal(
            state,
            'rcpt',
            port.checks.recipientLimited(state.user, state.clientIp),
          );
        }
        break;
      case 'accept':
        break;
    }
    return this.#suppressed(state, rcpt).then((refusal) => {
      if (refusal) {
        port.metrics.recipientsTotal.inc({ result: 'rejected' });
        return refusal;
      }
      tx.recipients.push(rcpt);
      if (address.dsn?.notify || orcpt !== undefined) {
        tx.rcptDsn ??= new Map();
        tx.rcptDsn.set(rcpt, {
          ...(address.dsn?.notify ? { notify: address.dsn.notify as DsnNotify[] } : {}),
          ...(orcpt !== undefined ? { orcpt } : {}),
        });
      }
      port.metrics.recipientsTotal.inc({ result: 'accepted' });
      return undefined;
    });
  }

  /**
   * The refusal of a recipient that bounced and is suppressed, or undefined. A state store
   * that cannot answer lets the recipient through: delivery bounces it again at worst.
   */
  async #suppressed(state: ConnectionState, rcpt: string): Promise<SmtpReplyError | undefined> {
    const suppression = this.#port.suppression;
    if (!suppression) return undefined;
    let hit: Suppression | null;
    const key = rcpt.toLowerCase();
    const ahead = state.suppressionAhead?.get(key);
    if (ahead) state.suppressionAhead?.delete(key);
    try {
      hit = await (ahead ?? suppression.check(rcpt));
    } catch (err: unknown) {
      state.log.warn(
        {
          event: 'suppression_unavailable',
          recipient: rcpt,
          err: err instanceof Error ? err.message : String(err),
        },
        'cannot check the suppression list; recipient accepted',
      );
      return undefined;
    }
    if (hit === null) return undefined;
    return this.#refusals.refuse(
      state,
      'rcpt',
      'RECIPIENT_SUPPRESSED',
      {
        recipient: rcpt,
        class: hit.class,
        reply: hit.reply.slice(0, 120),
        since: hit.since,
        until: hit.until,
      },
      { recipient: rcpt, class: hit.class },
    );
  }
}
