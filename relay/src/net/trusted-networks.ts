// The peers allowed to speak for someone else (e.g. send a PROXY protocol header): a set
// of CIDR blocks and single hosts, matched with Node's BlockList.

import { BlockList, isIP } from 'node:net';
import { SluiceError } from '../errors.ts';

type Family = 'ipv4' | 'ipv6';

export class TrustedNetworks {
  readonly #list = new BlockList();
  readonly #size: number;

  /**
   * Accepts 'a.b.c.d', 'a.b.c.d/n', IPv6 hosts and 'x::/n'; throws SLUICE_ERR_CONFIG_INVALID
   * on anything else, naming `field` (the config field the list comes from) when given.
   */
  constructor(cidrs: readonly string[], field?: string) {
    for (const entry of cidrs) {
      addEntry(this.#list, entry, field);
    }
    this.#size = cidrs.length;
  }

  /** True when the address (as a socket reports it) falls in one of the networks; false for garbage. */
  contains(address: string): boolean {
    const family = familyOf(address);
    if (family === undefined) {
      return false;
    }
    // BlockList compares an IPv4-mapped IPv6 address ('::ffff:10.1.2.3', '::ffff:a01:203')
    // with IPv4 rules as the IPv4 address it carries, so dual-stack listeners just work.
    return this.#list.check(address, family);
  }

  get size(): number {
    return this.#size;
  }
}

function addEntry(list: BlockList, entry: string, field: string | undefined): void {
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const family = familyOf(address);
  if (family === undefined || address.includes('%')) {
    throw invalid(entry, 'not an IPv4 or IPv6 address', field);
  }
  if (slash === -1) {
    list.addAddress(address, family);
    return;
  }
  const prefixText = entry.slice(slash + 1);
  const maxPrefix = family === 'ipv4' ? 32 : 128;
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > maxPrefix) {
    throw invalid(entry, `prefix length must be 0-${maxPrefix}`, field);
  }
  list.addSubnet(address, prefix, family);
}

function familyOf(address: string): Family | undefined {
  switch (isIP(address)) {
    case 4:
      return 'ipv4';
    case 6:
      return 'ipv6';
    default:
      return undefined;
  }
}

function invalid(entry: string, why: string, field: string | undefined): SluiceError {
  const what = field === undefined ? 'trusted network' : `${field}:`;
  return new SluiceError('SLUICE_ERR_CONFIG_INVALID', `${what} ${JSON.stringify(entry)}: ${why}`);
}
