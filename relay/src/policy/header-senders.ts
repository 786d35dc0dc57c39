// Which header From and Sender addresses an authenticated user may use (senders.headerFrom:
// enforce). MAIL FROM is only the envelope: receivers and DMARC judge the header From, so a
// user allowed to send as alice@customer.example must not put ceo@bank.example there.
import { domainToASCII } from 'node:url';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type { SendersConfig, UserRecord } from '../config/schema.ts';
import { isSenderAllowed } from './sender.ts';

/** The From and Sender fields of a message header, each as its unfolded value. */
export interface HeaderSenders {
  /** The value of every From field (RFC 5322 wants exactly one; a second one is checked too). */
  from: readonly string[];
  /** The value of every Sender field. */
  sender: readonly string[];
}

export type HeaderSendersDecision =
  | { kind: 'ok' }
  /** No From field, or one without an address (an empty group, an encoded word where the address should be). */
  | { kind: 'no_from' }
  | { kind: 'not_allowed'; field: 'From' | 'Sender'; address: string };

/**
 * The addresses of a From or Sender value: groups flattened (an empty group gives none),
 * display names and comments set aside. An entry without an address gives ''.
 */
export function headerAddresses(value: string): string[] {
  return addressparser(value, { flatten: true }).map((entry) => (entry.address ?? '').trim());
}

function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return undefined;
  const domain = address
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, '');
  // an IDN compares in its A-label form, as the sending domains are written
  return domainToASCII(domain) || domain;
}

/** Who may send as each domain: every user, or the users named. */
type DomainIndex = ReadonlyMap<string, 'all' | ReadonlySet<string>>;

// built once per config (up to 100,000 domains of up to 100,000 users each), not per message
const indexes = new WeakMap<SendersConfig['domains'], DomainIndex>();

function domainIndex(domains: SendersConfig['domains']): DomainIndex {
  let index = indexes.get(domains);
  if (index) return index;
  const built = new Map<string, 'all' | Set<string>>();
  for (const entry of domains) {
    const name = entry.domain.toLowerCase();
    const known = built.get(name);
    if (known === 'all') continue;
    if (entry.users === undefined) built.set(name, 'all');
    else built.set(name, new Set([...(known ?? []), ...entry.users]));
  }
  index = built;
  indexes.set(domains, index);
  return index;
}

/** Whether `user` may put `address` in a From or Sender field. */
export function mayUseAddress(address: string, user: UserRecord, senders: SendersConfig): boolean {
  // absent allowedSenders means "any MAIL FROM"; for the header only explicit patterns count
  if (user.allowedSenders && isSenderAllowed(address, user.allowedSenders)) return true;
  const domain = domainOf(address);
  if (domain === undefined) return false;
  const users = domainIndex(senders.domains).get(domain);
  return users === 'all' || (users?.has(user.username) ?? false);
}

/** The decision for one message's From and Sender addresses. */
export function decideHeaderSenders(
  header: HeaderSenders,
  user: UserRecord,
  senders: SendersConfig,
): HeaderSendersDecision {
  if (senders.headerFrom === 'off') return { kind: 'ok' };
  const from = header.from.flatMap(headerAddresses);
  if (from.length === 0 || from.some((address) => domainOf(address) === undefined))
    return { kind: 'no_from' };
  for (const address of from) {
    if (!mayUseAddress(address, user, senders)) return { kind: 'not_allowed', field: 'From', address };
  }
  for (const address of header.sender.flatMap(headerAddresses)) {
    if (!mayUseAddress(address, user, senders)) return { kind: 'not_allowed', field: 'Sender', address };
  }
  return { kind: 'ok' };
}
