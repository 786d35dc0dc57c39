// The handoff account lets a draining relay pass its queue to a peer, free of per-IP
// limits. Only peers may use it: AUTH as it from outside the pod network is refused as a
// wrong password would be, so its existence and a right guess are not revealed.
import type { RelayConfig } from '../config/schema.ts';
import { TrustedNetworks } from '../net/trusted-networks.ts';

type Handoff = NonNullable<RelayConfig['drain']['handoff']>;
const networks = new WeakMap<Handoff, TrustedNetworks>();

/** True when `username` is the handoff account, by which peer relays pass on mail they accepted. */
export function isHandoffAccount(config: RelayConfig, username: string): boolean {
  return config.drain.handoff !== undefined && username === config.drain.handoff.username;
}

/** True when `username` is the handoff account and `clientIp` is outside its networks. */
export function handoffFromOutside(config: RelayConfig, username: string, clientIp: string): boolean {
  const handoff = config.drain.handoff;
  if (handoff === undefined || username !== handoff.username) return false;
  let allowed = networks.get(handoff);
  if (allowed === undefined) {
    allowed = new TrustedNetworks(handoff.fromNetworks);
    networks.set(handoff, allowed);
  }
  return !allowed.contains(clientIp);
}
