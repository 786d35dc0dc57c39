// What every stage shares: its result (a refusal, nothing, or a promise of either), which
// the adapter (handlers.ts) turns into smtp-server's callback, and the DNSBL steps that
// the connect, AUTH and MAIL stages share.
import type { RelayConfig } from '../../config/schema.ts';
import type { DnsblVerdict } from '../../dnsbl/checker.ts';
import type { RelayMetrics } from '../../observability/metrics.ts';
import { ATTR, type Tracer, traced } from '../../observability/spans.ts';
import { decideDnsbl, dnsblTags } from '../../policy/dnsbl-decision.ts';
import type { SharedChecks } from '../../policy/shared-checks.ts';
import type { RefusalRecorder } from '../refusals.ts';
import type { SmtpReplyError } from '../replies.ts';
import type { ConnectionState } from '../session-state.ts';
import { describeDnsbl } from '../session-trace.ts';

/** A stage's answer: the refusal to reply with, or undefined to go on; sync where it can be. */
export type Verdict = Error | undefined;
export type StageResult = Verdict | Promise<Verdict>;

/** What a DNSBL lookup needs. */
export interface DnsblLookupPort {
  readonly checks: Pick<SharedChecks, 'dnsblEnabled' | 'dnsblVerdict'>;
  readonly tracer: Tracer;
}

/** What applying a DNSBL verdict needs. */
export interface DnsblApplyPort {
  readonly config: Pick<RelayConfig, 'hostname' | 'dnsbl'>;
  readonly metrics: Pick<RelayMetrics, 'dnsblListedTotal'>;
}

/** The DNSBL verdict for the client, in a dnsbl.check span under the session. */
export function dnsblVerdict(
  port: DnsblLookupPort,
  state: ConnectionState,
  stage: 'connect' | 'auth',
): Promise<DnsblVerdict | undefined> {
  if (!port.checks.dnsblEnabled()) return Promise.resolve(undefined);
  return traced(
    port.tracer,
    'dnsbl.check',
    state.span,
    { [ATTR.stage]: stage },
    () => port.checks.dnsblVerdict(state.clientIp),
    describeDnsbl,
  );
}

/** Applies a DNSBL verdict: counts and tags the listings, and returns the refusal, if any. */
export function dnsblRefusal(
  port: DnsblApplyPort,
  refusals: RefusalRecorder,
  state: ConnectionState,
  verdict: DnsblVerdict | undefined,
  stage: 'connect' | 'mail',
): SmtpReplyError | undefined {
  if (!verdict) return undefined;
  for (const hit of verdict.listed) port.metrics.dnsblListedTotal.inc({ zone: hit.zone, action: hit.action });
  for (const hit of dnsblTags(verdict)) {
    state.tags.push(`dnsbl:${hit.zone}`);
    state.log.info({ event: 'dnsbl_tagged', zone: hit.zone, code: hit.code }, 'client listed (tag only)');
  }
  const decision = decideDnsbl(verdict, port.config.dnsbl);
  switch (decision.kind) {
    case 'pass':
      return undefined;
    case 'reject': {
      const { hit } = decision;
      const key = stage === 'connect' ? 'DNSBL_LISTED_CONNECT' : 'DNSBL_LISTED';
      return refusals.refuse(state, stage, key, { message: hit.message }, { zone: hit.zone, code: hit.code });
    }
    case 'tempfail': {
      const { failed } = decision;
      const key = stage === 'connect' ? 'DNSBL_TEMPFAIL_CONNECT' : 'DNSBL_TEMPFAIL';
      return refusals.refuse(
        state,
        stage,
        key,
        { hostname: port.config.hostname, zone: failed.zone },
        { failure: failed.reason },
      );
    }
  }
}
