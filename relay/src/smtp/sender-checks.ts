// The end-of-DATA checks of who the message says it is from: header From and Sender
// authorization (policy/header-senders.ts) and the DMARC pre-check (dmarc/precheck.ts).
// They run once the whole message is in and signed, so the DMARC check knows the
// signature the relay adds. Each gives a refusal for the reply table, or nothing.
import type { DmarcPrecheckConfig, RelayConfig, UserRecord } from '../config/schema.ts';
import type { MessageSigner } from '../dkim/signer.ts';
import {
  type AnswerCache,
  cachedResolve,
  type DmarcPrecheckOutcome,
  type DnsResolve,
  dmarcPrecheck,
  dnsResolve,
} from '../dmarc/precheck.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelayMetrics } from '../observability/metrics.ts';
import { isHandoffAccount } from '../policy/handoff-origin.ts';
import { decideHeaderSenders, headerAddresses } from '../policy/header-senders.ts';
import type { ReplyKey } from './replies.ts';

export interface SenderRefusal {
  key: ReplyKey;
  vars: Record<string, string | number>;
}

export interface SenderCheckResult {
  refusal?: SenderRefusal;
  /** The DMARC pre-check's result per From domain, for the accepted line. */
  dmarc?: Record<string, DmarcPrecheckOutcome['result']>;
}

// one resolver per dmarcPrecheck section: a reload that changes it gets a new one
const resolvers = new WeakMap<DmarcPrecheckConfig, DnsResolve>();

function resolverFor(config: DmarcPrecheckConfig, cache: AnswerCache | undefined): DnsResolve {
  let resolve = resolvers.get(config);
  if (!resolve) {
    resolve = dnsResolve(config.resolvers, config.timeoutMs);
    if (cache && config.cacheSeconds > 0) resolve = cachedResolve(resolve, cache, config.cacheSeconds * 1000);
    resolvers.set(config, resolve);
  }
  return resolve;
}

function fromDomains(signer: MessageSigner): string[] {
  const domains = new Set<string>();
  for (const address of signer.values('From').flatMap(headerAddresses)) {
    const at = address.lastIndexOf('@');
    if (at > 0 && at < address.length - 1) domains.add(address.slice(at + 1).toLowerCase());
  }
  return [...domains];
}

export async function checkSenders(options: {
  config: RelayConfig;
  signer: MessageSigner;
  user: UserRecord | undefined;
  envelopeSender: string;
  metrics: RelayMetrics;
  log: Logger;
  /** Where DNS answers are shared between pods. */
  cache?: AnswerCache | undefined;
}): Promise<SenderCheckResult> {
  const { config, signer, user, metrics, log } = options;
  // mail a draining peer hands on was checked when that peer accepted it
  if (user && isHandoffAccount(config, user.username)) return {};
  if (user) {
    const decision = decideHeaderSenders(
      { from: signer.values('From'), sender: signer.values('Sender') },
      user,
      config.senders,
    );
    if (decision.kind === 'no_from') return { refusal: { key: 'HEADER_FROM_MISSING', vars: {} } };
    if (decision.kind === 'not_allowed') {
      return {
        refusal: {
          key: 'HEADER_SENDER_NOT_ALLOWED',
          vars: { field: decision.field, address: decision.address, user: user.username },
        },
      };
    }
  }
  const precheck = config.dmarcPrecheck;
  if (precheck.action === 'off') return {};
  const outcome = signer.outcome;
  const signingDomains = outcome.signed ? [outcome.domain] : [];
  const results: Record<string, DmarcPrecheckOutcome['result']> = {};
  for (const domain of fromDomains(signer)) {
    const checked = await dmarcPrecheck({
      fromDomain: domain,
      envelopeSender: options.envelopeSender,
      signingDomains,
      egressIps: precheck.egressIps ?? config.ownIpWatch.ips,
      hostname: config.hostname,
      resolve: resolverFor(precheck, options.cache),
    });
    results[domain] = checked.result;
    const action = checked.result === 'would_fail' ? precheck.action : 'none';
    metrics.dmarcPrecheckTotal.inc({ result: checked.result, action });
    if (checked.result === 'dns_error') {
      log.warn(
        { event: 'dmarc_precheck', result: checked.result, domain, detail: checked.detail },
        'DMARC pre-check could not look up DNS; message accepted',
      );
    } else if (checked.result === 'would_fail') {
      log.warn(
        {
          event: 'dmarc_precheck',
          result: checked.result,
          action,
          domain,
          policy: checked.policy,
          why: checked.why,
        },
        'message would fail DMARC at the receiver',
      );
      if (precheck.action === 'reject') {
        return {
          refusal: {
            key: 'DMARC_WOULD_FAIL',
            vars: { domain, policy: checked.policy, why: checked.why, fix: checked.fix },
          },
          dmarc: results,
        };
      }
    }
  }
  return { dmarc: results };
}
