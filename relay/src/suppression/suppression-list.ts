// Recipients the relay no longer sends to: an address that bounced with a class the policy
// names (invalid-recipient by default) is kept for suppression.ttlSeconds in the shared
// state, so every relay of the policy refuses new mail to it at RCPT (550 5.1.1, saying
// why and since when) instead of sending mail the provider counts against our reputation.
// One expiring map in the state store: field the lowercased address, value what bounced.
import type { RelayConfig } from '../config/schema.ts';
import type { StateStore } from '../state/store.ts';

export const SUPPRESSION_KEY = 'suppression:recipients';

export type SuppressionConfig = RelayConfig['suppression'];

export interface Suppression {
  address: string;
  /** The class of the bounce (delivery/reply-class.ts). */
  class: string;
  /** The remote answer that bounced, as the sender's bounce notice has it. */
  reply: string;
  /** The user whose message bounced. */
  user: string;
  since: string;
  until: string;
}

interface Stored {
  class: string;
  reply: string;
  user: string;
  since: number;
}

export interface SuppressionLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface SuppressionListOptions {
  store: Pick<StateStore, 'mapPut' | 'mapGet' | 'mapGetMany' | 'mapEntries' | 'mapDelete'>;
  config: () => SuppressionConfig;
  now?: () => number;
  logger: SuppressionLogger;
}

/** Whether a bounce of this class suppresses its recipient (pure). */
export function suppresses(config: SuppressionConfig, cls: string): boolean {
  return config.enabled && config.classes.includes(cls as SuppressionConfig['classes'][number]);
}

/** Replies and logs are bounded: a remote answer can be long. */
const MAX_REPLY = 200;

export class SuppressionList {
  readonly #store: SuppressionListOptions['store'];
  readonly #config: () => SuppressionConfig;
  readonly #now: () => number;
  readonly #logger: SuppressionLogger;

  constructor(options: SuppressionListOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
  }

  /** Records a bounce; true when it suppressed the recipient (the policy names its class). */
  async bounced(address: string, bounce: { class: string; reply: string; user: string }): Promise<boolean> {
    const config = this.#config();
    if (!suppresses(config, bounce.class)) return false;
    const now = this.#now();
    const value: Stored = {
      class: bounce.class,
      reply: bounce.reply.slice(0, MAX_REPLY),
      user: bounce.user,
      since: now,
    };
    await this.#store.mapPut(
      SUPPRESSION_KEY,
      address.toLowerCase(),
      JSON.stringify(value),
      config.ttlSeconds * 1000,
      now,
      false,
    );
    this.#logger.info(
      { event: 'recipient_suppressed', recipient: address, class: bounce.class, user: bounce.user },
      'recipient suppressed after a bounce',
    );
    return true;
  }

  /** The suppression of an address, or null (also when suppression is off). */
  async check(address: string): Promise<Suppression | null> {
    if (!this.#config().enabled) return null;
    const entry = await this.#store.mapGet(SUPPRESSION_KEY, address.toLowerCase(), this.#now());
    return entry === null ? null : toSuppression(entry.field, entry.value, entry.expiresAt);
  }

  /**
   * The suppressions of several addresses in one store call (a pipelined batch of RCPTs),
   * in the order given; all null when suppression is off.
   */
  async checkMany(addresses: readonly string[]): Promise<Array<Suppression | null>> {
    if (!this.#config().enabled) return addresses.map(() => null);
    const fields = addresses.map((a) => a.toLowerCase());
    const entries = await this.#store.mapGetMany(SUPPRESSION_KEY, fields, this.#now());
    return entries.map((e) => (e === null ? null : toSuppression(e.field, e.value, e.expiresAt)));
  }

  /** Every live suppression, soonest to expire first. */
  async list(): Promise<Suppression[]> {
    const entries = await this.#store.mapEntries(SUPPRESSION_KEY, this.#now());
    return entries.map((e) => toSuppression(e.field, e.value, e.expiresAt));
  }

  /** Lifts a suppression; false when the address was not suppressed. */
  async remove(address: string): Promise<boolean> {
    const removed = await this.#store.mapDelete(SUPPRESSION_KEY, address.toLowerCase());
    if (removed) {
      this.#logger.info({ event: 'suppression_removed', recipient: address }, 'suppression removed');
    }
    return removed;
  }
}

function toSuppression(address: string, value: string, expiresAt: number): Suppression {
  let stored: Partial<Stored> = {};
  try {
    stored = JSON.parse(value) as Partial<Stored>;
  } catch {
    // a value this relay did not write: the entry still suppresses, with what is known
  }
  return {
    address,
    class: typeof stored.class === 'string' ? stored.class : 'other',
    reply: typeof stored.reply === 'string' ? stored.reply : '',
    user: typeof stored.user === 'string' ? stored.user : '',
    since: new Date(typeof stored.since === 'number' ? stored.since : expiresAt).toISOString(),
    until: new Date(expiresAt).toISOString(),
  };
}
