// What a new connection gets: refused while the relay drains or when it was over one of
// this relay's connection caps when it was accepted (connection-slots.ts), then refused
// when the cross-pod slot says the client holds too many or the shared state cannot say.
// Pure: the stage does the I/O and the DNSBL.
import type { CheckOutcome } from './shared-checks.ts';

export type ConnectDecision<Cap extends string> =
  | { kind: 'open' }
  | { kind: 'refuse'; refusal: 'SHUTTING_DOWN' | Cap; cause: 'draining' | 'over_cap' };

/** Before the greeting: draining first, then the caps' verdict taken at accept. */
export function decideConnect<Cap extends string>(facts: {
  draining: boolean;
  overCap: Cap | undefined;
}): ConnectDecision<Cap> {
  if (facts.draining) return { kind: 'refuse', refusal: 'SHUTTING_DOWN', cause: 'draining' };
  if (facts.overCap !== undefined) return { kind: 'refuse', refusal: facts.overCap, cause: 'over_cap' };
  return { kind: 'open' };
}

export type SlotDecision =
  /** holdsSlot: a slot was taken and is released on close (false when slots are off). */
  | { kind: 'open'; holdsSlot: boolean }
  | {
      kind: 'refuse';
      refusal: 'TOO_MANY_CONNECTIONS_IP' | 'STATE_TEMPFAIL_CONNECT';
      closeReason?: 'too_many_connections_ip';
    };

/** The cross-pod connection slot's answer. */
export function decideSlot(outcome: CheckOutcome): SlotDecision {
  if (outcome.kind === 'rate_limited')
    return { kind: 'refuse', refusal: 'TOO_MANY_CONNECTIONS_IP', closeReason: 'too_many_connections_ip' };
  if (outcome.kind === 'unavailable') return { kind: 'refuse', refusal: 'STATE_TEMPFAIL_CONNECT' };
  return { kind: 'open', holdsSlot: outcome.kind === 'ok' };
}
