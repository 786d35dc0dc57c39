// A bug behind five nested checks, each passed by one byte value in 16 (values none of
// the mutator's "interesting" bytes hit): blind mutation needs about 16^5 (a million)
// tries to reach it, a coverage-guided search a few thousand, because every check passed
// is a new block that keeps the input that passed it.
const WINDOWS = [0x40, 0x50, 0x60, 0xa0, 0xb0];

function inWindow(input: Buffer, i: number): boolean {
  const b = input[i] ?? 0;
  const low = WINDOWS[i] ?? 0;
  return b >= low && b < low + 16;
}

export function guarded(input: Buffer): void {
  if (inWindow(input, 0)) {
    if (inWindow(input, 1)) {
      if (inWindow(input, 2)) {
        if (inWindow(input, 3)) {
          if (inWindow(input, 4)) throw new Error('reached the guarded bug');
        }
      }
    }
  }
}
