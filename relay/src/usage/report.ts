// Usage reports: the rows of the state store's usage buckets as the admin API and the CLI
// show them. Pure except readUsageReport, which asks the store.
import type { StateStore, UsageRow } from '../state/store.ts';
import { bucketName, bucketStarts, PERIOD_MS, parseBucketName, type UsagePeriod } from './buckets.ts';
import { OUTCOME_PREFIX, REJECTION_PREFIX, USAGE_COUNTERS } from './recorder.ts';

export interface UsageReportRow {
  user: string;
  period: UsagePeriod;
  /** Start of the bucket, ISO 8601 UTC. */
  start: string;
  messages: number;
  recipients: number;
  bytes: number;
  /** Transactions refused at MAIL FROM or end of DATA. */
  rejected: number;
  /** Every refusal (RCPT ones too) by reason label. */
  rejections: Record<string, number>;
  authentications: number;
  distinctClientIps: number;
  /** Recipient delivery attempts by result, each with its count by reply class (absent: none). */
  deliveries?: Record<
    'delivered' | 'deferred' | 'bounced',
    { total: number; classes: Record<string, number> }
  >;
}

export interface UsageQuery {
  period: UsagePeriod;
  /** Epoch ms; the buckets overlapping [from, to] are read. */
  from: number;
  to: number;
  user?: string;
}

/** Most buckets one query may span (31 days of hours, 400 days). */
export const MAX_BUCKETS: Readonly<Record<UsagePeriod, number>> = { hour: 24 * 31, day: 400 };

/** Default span: the last 24 hours, or the last 7 days, ending now. */
const DEFAULT_BUCKETS: Readonly<Record<UsagePeriod, number>> = { hour: 24, day: 7 };

/** A time as the API takes it: ISO 8601 (2025-07-01T10:00:00Z), a day (2025-07-01), an hour (2025-07-01T10). */
export function parseTime(text: string): number | undefined {
  const hour = /^\d{4}-\d{2}-\d{2}T\d{2}$/.test(text) ? `${text}:00:00Z` : text;
  const day = /^\d{4}-\d{2}-\d{2}$/.test(hour) ? `${hour}T00:00:00Z` : hour;
  const ms = Date.parse(day);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The query for the API's parameters, or the problem with them. */
export function usageQuery(
  params: { period?: string; from?: string; to?: string; user?: string },
  now: number,
): { query: UsageQuery } | { error: string } {
  const period = params.period ?? 'hour';
  if (period !== 'hour' && period !== 'day') return { error: 'period must be hour or day' };
  const to = params.to === undefined ? now : parseTime(params.to);
  if (to === undefined) return { error: `to: ${JSON.stringify(params.to)} is not a time` };
  const from =
    params.from === undefined
      ? to - (DEFAULT_BUCKETS[period] - 1) * PERIOD_MS[period]
      : parseTime(params.from);
  if (from === undefined) return { error: `from: ${JSON.stringify(params.from)} is not a time` };
  if (from > to) return { error: 'from is after to' };
  const buckets = bucketStarts(period, from, to).length;
  if (buckets > MAX_BUCKETS[period]) {
    return { error: `the range spans ${buckets} ${period}s; at most ${MAX_BUCKETS[period]} per query` };
  }
  if (params.user !== undefined && params.user === '') return { error: 'user is empty' };
  return { query: { period, from, to, ...(params.user === undefined ? {} : { user: params.user }) } };
}

/** A store row as a report row (undefined for a bucket name that is not a usage bucket). */
export function reportRow(row: UsageRow): UsageReportRow | undefined {
  const bucket = parseBucketName(row.bucket);
  if (!bucket) return undefined;
  const count = (name: string) => row.counts[name] ?? 0;
  const rejections: Record<string, number> = {};
  for (const [name, n] of Object.entries(row.counts).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (name.startsWith(REJECTION_PREFIX) && n > 0) rejections[name.slice(REJECTION_PREFIX.length)] = n;
  }
  const deliveries: NonNullable<UsageReportRow['deliveries']> = {
    delivered: { total: 0, classes: {} },
    deferred: { total: 0, classes: {} },
    bounced: { total: 0, classes: {} },
  };
  let delivered = false;
  for (const [name, n] of Object.entries(row.counts).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!name.startsWith(OUTCOME_PREFIX) || n <= 0) continue;
    delivered = true;
    const [result, cls] = name.slice(OUTCOME_PREFIX.length).split(':') as [string, string | undefined];
    const entry = deliveries[result as keyof typeof deliveries];
    if (entry === undefined) continue;
    if (cls === undefined) entry.total = n;
    else entry.classes[cls] = n;
  }
  return {
    user: row.user,
    period: bucket.period,
    start: new Date(bucket.start).toISOString(),
    messages: count(USAGE_COUNTERS.messages),
    recipients: count(USAGE_COUNTERS.recipients),
    bytes: count(USAGE_COUNTERS.bytes),
    rejected: count(USAGE_COUNTERS.rejected),
    rejections,
    authentications: count(USAGE_COUNTERS.auths),
    distinctClientIps: row.distinct,
    ...(delivered ? { deliveries } : {}),
  };
}

/** The report rows of a query, oldest bucket first, then by user. */
export async function readUsageReport(
  store: Pick<StateStore, 'readUsage'>,
  query: UsageQuery,
): Promise<UsageReportRow[]> {
  const buckets = bucketStarts(query.period, query.from, query.to).map((s) => bucketName(query.period, s));
  const rows = await store.readUsage(buckets, query.user === undefined ? undefined : [query.user]);
  return rows
    .map(reportRow)
    .filter((r): r is UsageReportRow => r !== undefined)
    .sort((a, b) => (a.start === b.start ? (a.user < b.user ? -1 : 1) : a.start < b.start ? -1 : 1));
}
