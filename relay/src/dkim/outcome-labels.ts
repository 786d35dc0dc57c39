// What a DKIM signing outcome is called in metrics and in the accepted log line. The
// metric's domain label is bounded by config: the d= of a configured key, or a From domain
// that is a configured sending domain (a SendingDomain whose key DNS does not serve yet);
// every other From domain is counted as OTHER_DOMAIN.
import type { RelayConfig } from '../config/schema.ts';
import type { DkimKeys } from './keys.ts';
import type { DkimOutcome } from './signer.ts';

/** The domain label of mail from a domain the config does not name. */
export const OTHER_DOMAIN = 'other';
/** The selector label of unsigned mail. */
export const NO_SELECTOR = 'none';

export interface DkimLabels {
  result: string;
  domain: string;
  selector: string;
}

// one set per senders section (up to 100,000 domains): built once, not per message
const known = new WeakMap<RelayConfig['senders'], ReadonlySet<string>>();

function senderDomains(senders: RelayConfig['senders']): ReadonlySet<string> {
  let set = known.get(senders);
  if (!set) {
    set = new Set(senders.domains.map((d) => d.domain.toLowerCase()));
    known.set(senders, set);
  }
  return set;
}

/**
 * Labels of sluice_dkim_signatures_total: signed with the key's domain and selector (the
 * first key's, RSA, where a second Ed25519 signature is added), or why not with the From
 * domain when the config names it.
 */
export function dkimLabels(
  outcome: DkimOutcome,
  keys: DkimKeys,
  senders: RelayConfig['senders'],
): DkimLabels {
  if (outcome.signed) return { result: 'signed', domain: outcome.domain, selector: outcome.selector };
  const from = outcome.fromDomain;
  const named = from !== undefined && (keys.byDomain.has(from) || senderDomains(senders).has(from));
  return { result: outcome.reason, domain: named ? from : OTHER_DOMAIN, selector: NO_SELECTOR };
}

/** The accepted line's dkim field: who signed with which keys, or why nothing was signed. */
export function dkimLogField(outcome: DkimOutcome): Record<string, unknown> {
  return outcome.signed
    ? { result: 'signed', domain: outcome.domain, selector: outcome.selector, algorithms: outcome.algorithms }
    : {
        result: outcome.reason,
        ...(outcome.fromDomain === undefined ? {} : { fromDomain: outcome.fromDomain }),
      };
}
