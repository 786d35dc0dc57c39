// Usage is kept in fixed UTC buckets, one per hour and one per day. Pure arithmetic on
// epoch milliseconds: the bucket a moment falls in, the buckets of a range, and the
// readable names the state store keeps them under (usage:h:2025-07-01T10, usage:d:2025-07-01).

export type UsagePeriod = 'hour' | 'day';

export const PERIOD_MS: Readonly<Record<UsagePeriod, number>> = { hour: 3_600_000, day: 86_400_000 };

/** Start (epoch ms) of the bucket `at` falls in. */
export function bucketStart(at: number, period: UsagePeriod): number {
  const ms = PERIOD_MS[period];
  return Math.floor(at / ms) * ms;
}

/** The state-store name of the bucket starting at `start`. */
export function bucketName(period: UsagePeriod, start: number): string {
  const iso = new Date(start).toISOString();
  return period === 'hour' ? `usage:h:${iso.slice(0, 13)}` : `usage:d:${iso.slice(0, 10)}`;
}

/** Start of a bucket from its name, or undefined for a name that is not one. */
export function parseBucketName(name: string): { period: UsagePeriod; start: number } | undefined {
  const hour = /^usage:h:(\d{4}-\d{2}-\d{2}T\d{2})$/.exec(name);
  if (hour?.[1]) return { period: 'hour', start: Date.parse(`${hour[1]}:00:00.000Z`) };
  const day = /^usage:d:(\d{4}-\d{2}-\d{2})$/.exec(name);
  if (day?.[1]) return { period: 'day', start: Date.parse(`${day[1]}T00:00:00.000Z`) };
  return undefined;
}

/** Starts of the buckets that overlap [from, to], oldest first. */
export function bucketStarts(period: UsagePeriod, from: number, to: number): number[] {
  const out: number[] = [];
  for (let t = bucketStart(from, period); t <= to; t += PERIOD_MS[period]) out.push(t);
  return out;
}

/** The `count` buckets before the one `at` falls in, oldest first. */
export function previousBuckets(at: number, period: UsagePeriod, count: number): number[] {
  const current = bucketStart(at, period);
  return Array.from({ length: count }, (_, i) => current - (count - i) * PERIOD_MS[period]);
}
