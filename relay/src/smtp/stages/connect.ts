// The connect stage: a session opens (its span, its logger, its state), is refused while
// the relay drains or when it was over a connection cap at accept, then takes a cross-pod
// connection slot and, with dnsbl.checkAt connect, passes the DNSBL. Also the session's
// TLS handshake and its close, which give back what connect took.
import type { RelayConfig } from '../../config/schema.ts';
import type { Logger } from '../../observability/logger.ts';
import type { RelayMetrics } from '../../observability/metrics.ts';
import { ATTR, SpanKind, startSpan, type Tracer, traced, traceFields } from '../../observability/spans.ts';
import { decideConnect, decideSlot } from '../../policy/connect-decision.ts';
import type { SharedChecks } from '../../policy/shared-checks.ts';
import type { RefusalRecorder } from '../refusals.ts';
import { REPLIES, type ReplyKey } from '../replies.ts';
import type { ConnectionState } from '../session-state.ts';
import { describeCheck, endSession } from '../session-trace.ts';
import {
  type DnsblApplyPort,
  type DnsblLookupPort,
  dnsblRefusal,
  dnsblVerdict,
  type StageResult,
} from './stage.ts';

export interface ConnectPort extends DnsblLookupPort, DnsblApplyPort {
  readonly config: Pick<RelayConfig, 'hostname' | 'dnsbl'>;
  readonly draining: boolean;
  readonly checks: Pick<
    SharedChecks,
    'acquireConnection' | 'releaseConnection' | 'dnsblEnabled' | 'dnsblVerdict'
  >;
  readonly metrics: Pick<
    RelayMetrics,
    'connectionsTotal' | 'connectionsOpen' | 'tlsConnectionsTotal' | 'dnsblListedTotal'
  >;
  readonly logger: Logger;
  readonly tracer: Tracer;
}

export class ConnectStage {
  readonly #port: ConnectPort;
  readonly #listener: string;
  readonly #refusals: RefusalRecorder;
  /** Sessions whose connection was over a cap when it was accepted (see ConnectionSlots). */
  readonly #overCap = new Map<string, ReplyKey>();

  constructor(port: ConnectPort, listener: string, refusals: RefusalRecorder) {
    this.#port = port;
    this.#listener = listener;
    this.#refusals = refusals;
  }

  /**
   * The listener's verdict on the connection caps, taken when the connection was accepted:
   * the session gets this refusal at connect instead of a greeting.
   */
  overCap(sessionId: string, refusal: ReplyKey | undefined): void {
    if (refusal) this.#overCap.set(sessionId, refusal);
    else this.#overCap.delete(sessionId);
  }

  connect(sessionId: string, clientIp: string): StageResult {
    const port = this.#port;
    const { hostname } = port.config;
    const span = startSpan(
      port.tracer,
      'smtp.session',
      undefined,
      {
        [ATTR.sessionId]: sessionId,
        [ATTR.listener]: this.#listener,
        [ATTR.clientAddress]: clientIp,
      },
      SpanKind.SERVER,
    );
    // every line of the session carries its trace, so logs and traces find each other
    const log = port.logger.child({
      sessionId,
      clientIp,
      listener: this.#listener,
      ...traceFields(span),
    });
    const state: ConnectionState = {
      sessionId,
      listener: this.#listener,
      clientIp,
      openedAt: Date.now(),
      log,
      counted: false,
      slot: false,
      tags: [],
      messages: 0,
      rejections: 0,
      span,
    };
    this.#refusals.opened(state);
    port.metrics.connectionsTotal.inc({ listener: this.#listener });
    const overCap = this.#overCap.get(sessionId);
    const decision = decideConnect({ draining: port.draining, overCap });
    if (decision.kind === 'refuse') {
      if (decision.cause === 'over_cap') this.#overCap.delete(sessionId);
      state.closeReason = REPLIES[decision.refusal].reason;
      return this.#refusals.refuse(state, 'connect', decision.refusal, { hostname });
    }
    state.counted = true;
    port.metrics.connectionsOpen.inc({ listener: this.#listener });
    return this.#sharedChecks(state).then(() => undefined);
  }

  /** Cross-pod connection slot, then the DNSBL when it is checked at connect. */
  async #sharedChecks(state: ConnectionState): Promise<void> {
    const port = this.#port;
    const { hostname, dnsbl } = port.config;
    const slot = await traced(
      port.tracer,
      'ratelimit.check',
      state.span,
      { [ATTR.stage]: 'connect' },
      () => port.checks.acquireConnection(state.clientIp, state.sessionId),
      describeCheck,
    );
    const decision = decideSlot(slot);
    if (decision.kind === 'refuse') {
      if (decision.closeReason) state.closeReason = decision.closeReason;
      throw this.#refusals.refuse(state, 'connect', decision.refusal, { hostname });
    }
    state.slot = decision.holdsSlot;
    if (dnsbl.checkAt !== 'connect') return;
    const refusal = dnsblRefusal(
      port,
      this.#refusals,
      state,
      await dnsblVerdict(port, state, 'connect'),
      'connect',
    );
    if (refusal) {
      state.closeReason = refusal.reason;
      throw refusal;
    }
  }

  /** After the TLS handshake (implicit TLS or STARTTLS): counts it by protocol version. */
  secure(sessionId: string, version: string, cipher: string): void {
    this.#port.metrics.tlsConnectionsTotal.inc({ listener: this.#listener, version });
    this.#refusals.session(sessionId)?.span.setAttributes({
      [ATTR.tlsVersion]: version,
      [ATTR.tlsCipher]: cipher,
    });
  }

  /** The session ended: gives back its gauge and slot, ends its span, logs it. */
  close(sessionId: string, session: { secure: boolean; helo: string | undefined }): void {
    const state = this.#refusals.session(sessionId);
    if (!state) return;
    this.#refusals.closed(sessionId);
    const port = this.#port;
    if (state.counted) port.metrics.connectionsOpen.dec({ listener: this.#listener });
    if (state.slot) void port.checks.releaseConnection(state.clientIp, state.sessionId);
    endSession(state, session.secure);
    state.log.info(
      {
        event: 'connection',
        tls: session.secure,
        helo: session.helo,
        messages: state.messages,
        rejections: state.rejections,
        durationMs: Date.now() - state.openedAt,
        reason: state.closeReason,
      },
      'connection closed',
    );
  }
}
