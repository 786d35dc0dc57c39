// What the targets' checks throw: a finding names the property that failed.
import { inspect, isDeepStrictEqual } from 'node:util';

export class CheckFailed extends Error {
  override name = 'CheckFailed';
}

export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new CheckFailed(message);
}

/** Two ways of feeding the same bytes must give the same answer. */
export function checkSame(a: unknown, b: unknown, what: string): void {
  if (!isDeepStrictEqual(a, b)) {
    throw new CheckFailed(`${what}: ${inspect(a, { depth: 4 })} vs ${inspect(b, { depth: 4 })}`);
  }
}

/** The input cut into pieces at points taken from its length, for chunk-boundary checks. */
export function pieces(input: Buffer, count: number): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (let i = 1; i <= count; i++) {
    const to = i === count ? input.length : Math.floor((input.length * i) / count);
    if (to > from) out.push(input.subarray(from, to));
    from = Math.max(from, to);
  }
  return out;
}
