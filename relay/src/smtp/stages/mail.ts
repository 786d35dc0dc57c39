// The MAIL FROM stage: opens the transaction (its span), asks policy/mail-decision.ts about
// the command, the account and the sender, then enforces the DNSBL verdict started at AUTH
// and the message rate limits, which give the recipient allowance.
import type { SMTPServerAddress } from 'smtp-server';
import type { RelayConfig, UserRecord } from '../../config/schema.ts';
import { ATTR, type Tracer, traced } from '../../observability/spans.ts';
import { decideMailFrom } from '../../policy/mail-decision.ts';
import type { MailAllowance, SharedChecks } from '../../policy/shared-checks.ts';
import {
  badDsnValue,
  declaredSize,
  declaresSmtpUtf8,
  MAIL_PARAMETERS,
  parameterValue,
  unsupportedParameter,
} from '../parameters.ts';
import type { RefusalRecorder } from '../refusals.ts';
import type { ConnectionState } from '../session-state.ts';
import { describeCheck, failTransaction, startTransaction } from '../session-trace.ts';
import { type DnsblApplyPort, dnsblRefusal, type StageResult } from './stage.ts';

export interface MailPort extends DnsblApplyPort {
  readonly config: Pick<RelayConfig, 'hostname' | 'dnsbl'>;
  readonly checks: Pick<SharedChecks, 'allowMail'>;
  /** The accounts as they are now: every MAIL FROM looks the user up again. */
  readonly users: ReadonlyMap<string, UserRecord>;
  readonly abuse?: { isSuspended(user: string): boolean } | undefined;
  readonly tracer: Tracer;
  /** Whether the spool's filesystem has room for a message of `size` bytes and the reserve. */
  spoolRoom(size: number): boolean;
}

export class MailStage {
  readonly #port: MailPort;
  readonly #refusals: RefusalRecorder;

  constructor(port: MailPort, refusals: RefusalRecorder) {
    this.#port = port;
    this.#refusals = refusals;
  }

  mailFrom(state: ConnectionState | undefined, address: SMTPServerAddress): StageResult {
    if (!state) return this.#refusals.refuse(state, 'mail', 'AUTH_REQUIRED');
    const port = this.#port;
    startTransaction(port.tracer, state);
    const refused = (err: Error) => {
      failTransaction(state, err, 'error');
      return err;
    };
    const sender = address.address;
    const envid = parameterValue(address, 'ENVID');
    const smtpUtf8 = declaresSmtpUtf8(address);
    // the users file may have changed since AUTH: a removed or suspended user stops here
    const current = state.user ? port.users.get(state.user.username) : undefined;
    const decision = decideMailFrom({
      sender,
      unsupportedParameter: unsupportedParameter(address, MAIL_PARAMETERS),
      badEnvid: envid === undefined ? undefined : badDsnValue('ENVID', envid),
      smtpUtf8,
      authenticated: state.user?.username,
      current,
      abuseSuspended: current ? (port.abuse?.isSuspended(current.username) ?? false) : false,
      spoolRoom: port.spoolRoom(declaredSize(address)),
    });
    if (decision.kind === 'refuse') {
      if (decision.user) state.user = decision.user;
      return refused(this.#refusals.refuse(state, 'mail', decision.refusal, decision.vars, decision.fields));
    }
    const { user } = decision;
    state.user = user;
    const ret = parameterValue(address, 'RET')?.toUpperCase();
    return this.#checks(state, user).then(
      (allowance) => {
        state.tx = {
          sender,
          smtpUtf8,
          recipients: [],
          dropped: 0,
          allowance: allowance.recipients,
          mail: { counted: allowance.counted, ...(allowance.credit ? { credit: allowance.credit } : {}) },
          ...(ret === 'FULL' || ret === 'HDRS' ? { ret } : {}),
          ...(envid !== undefined ? { envid } : {}),
        };
        return undefined;
      },
      (err: Error) => refused(err),
    );
  }

  /** DNSBL verdict from AUTH (checkAt: auth) and the message rate limits; the recipient allowance. */
  async #checks(state: ConnectionState, user: UserRecord): Promise<MailAllowance> {
    const port = this.#port;
    if (state.dnsbl) {
      const refusal = dnsblRefusal(port, this.#refusals, state, await state.dnsbl, 'mail');
      if (refusal) throw refusal;
    }
    const allowed = await traced(
      port.tracer,
      'ratelimit.check',
      state.txSpan,
      { [ATTR.stage]: 'mail' },
      () => port.checks.allowMail(user, state.clientIp, state.credit),
      (a) => describeCheck(a.outcome),
    );
    // the credit is spent on this message; the end of DATA gives the next one
    state.credit = undefined;
    const refusal = this.#refusals.checkRefusal(state, 'mail', allowed.outcome);
    if (refusal) throw refusal;
    return allowed;
  }
}
