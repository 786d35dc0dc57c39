// What the operator reads from the relays' admin API to summarise usage and abuse into
// SmtpUser status: today's usage per user (GET /usage?period=day) and the live flags and
// suspensions (GET /abuse), over the policy's admin Service with the admin token. The
// types here are the operator's reading of that JSON; it never imports relay internals.

/** What became of the user's recipients, per delivery attempt. */
export const DELIVERY_RESULTS = ['delivered', 'deferred', 'bounced'] as const;
export type DeliveryResult = (typeof DELIVERY_RESULTS)[number];

/** Recipient delivery attempts by result, each with its count by the class of the remote reply. */
export type DeliveryNumbers = Record<DeliveryResult, { total: number; classes: Record<string, number> }>;

export interface UsageNumbers {
  messages: number;
  recipients: number;
  bytes: number;
  rejected: number;
  authentications: number;
  distinctClientIps: number;
  rejections: Record<string, number>;
  /** Absent when the relays report no delivery attempt (or are older than the report of them). */
  deliveries?: DeliveryNumbers;
}

export interface RelayFlag {
  user: string;
  kind: string;
  reason: string;
  message: string;
  detectedAt: string;
}

export interface RelaySuspension {
  user: string;
  reason: string;
  message: string;
  until: string;
}

export interface PolicyUsage {
  /** The UTC day `today` covers, YYYY-MM-DD. */
  date: string;
  today: ReadonlyMap<string, UsageNumbers>;
  flags: readonly RelayFlag[];
  /** Live suspensions; the relays enforce them only with autoSuspend. */
  suspended: readonly RelaySuspension[];
  autoSuspend: boolean;
}

export interface UsageTarget {
  namespace: string;
  policy: string;
  /** The admin Service, e.g. http://mail-relay-admin.prod.svc:9587 */
  url: string;
  token: string;
}

/** Where usage comes from: the relays' admin API in a cluster; tests inject their own. */
export interface UsageSource {
  fetch(target: UsageTarget): Promise<PolicyUsage>;
}

export class UsageFetchError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UsageFetchError';
  }
}

/** Reads usage and abuse from a relay admin API over HTTP. */
export class RelayAdminUsageSource implements UsageSource {
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #now: () => number;

  constructor(options: { fetch?: typeof fetch; timeoutMs?: number; now?: () => number } = {}) {
    this.#fetch = options.fetch ?? fetch;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#now = options.now ?? Date.now;
  }

  async fetch(target: UsageTarget): Promise<PolicyUsage> {
    const now = new Date(this.#now()).toISOString();
    const [usage, abuse] = await Promise.all([
      this.#get(target, `/usage?period=day&from=${now}&to=${now}`),
      this.#get(target, '/abuse'),
    ]);
    return parsePolicyUsage(usage, abuse, now.slice(0, 10));
  }

  async #get(target: UsageTarget, path: string): Promise<unknown> {
    const url = `${target.url.replace(/\/+$/, '')}${path}`;
    let response: Response;
    try {
      response = await this.#fetch(url, {
        headers: { authorization: `Bearer ${target.token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err: unknown) {
      throw new UsageFetchError(`cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    if (!response.ok) throw new UsageFetchError(`${url} answered HTTP ${response.status}`);
    try {
      return await response.json();
    } catch (err: unknown) {
      throw new UsageFetchError(`${url} answered with something that is not JSON`, { cause: err });
    }
  }
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const rec = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A usage row's deliveries ({delivered: {total, classes}, …}), read defensively. */
function parseDeliveries(raw: unknown): DeliveryNumbers | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const d = rec(raw);
  const one = (v: unknown) => {
    const classes: Record<string, number> = {};
    for (const [cls, n] of Object.entries(rec(rec(v).classes))) if (num(n) > 0) classes[cls] = num(n);
    return { total: num(rec(v).total), classes };
  };
  return { delivered: one(d.delivered), deferred: one(d.deferred), bounced: one(d.bounced) };
}

/** The answers of GET /usage?period=day and GET /abuse, read defensively. */
export function parsePolicyUsage(usage: unknown, abuse: unknown, date: string): PolicyUsage {
  const today = new Map<string, UsageNumbers>();
  for (const raw of list(rec(usage).rows)) {
    const row = rec(raw);
    const user = str(row.user);
    if (user === '' || !str(row.start).startsWith(date)) continue;
    const rejections: Record<string, number> = {};
    for (const [reason, n] of Object.entries(rec(row.rejections))) rejections[reason] = num(n);
    const deliveries = parseDeliveries(row.deliveries);
    today.set(user, {
      messages: num(row.messages),
      recipients: num(row.recipients),
      bytes: num(row.bytes),
      rejected: num(row.rejected),
      authentications: num(row.authentications),
      distinctClientIps: num(row.distinctClientIps),
      rejections,
      ...(deliveries ? { deliveries } : {}),
    });
  }
  const a = rec(abuse);
  return {
    date,
    today,
    autoSuspend: a.autoSuspend === true,
    flags: list(a.flags).map((raw) => {
      const f = rec(raw);
      return {
        user: str(f.user),
        kind: str(f.kind),
        reason: str(f.reason),
        message: str(f.message),
        detectedAt: str(f.detectedAt),
      };
    }),
    suspended: list(a.suspended).map((raw) => {
      const s = rec(raw);
      return { user: str(s.user), reason: str(s.reason), message: str(s.message), until: str(s.until) };
    }),
  };
}
