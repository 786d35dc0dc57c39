// Reproducible random input for tests that compare an encoder or parser with a reference:
// bytes drawn from a small alphabet (the bytes that matter, often), and a split into
// chunks of random sizes, both from a seed so a failure names its input.

/** length bytes, each one of alphabet's, from a linear congruential generator. */
export function randomFrom(alphabet: string, seed: number, length: number): Buffer {
  const letters = Buffer.from(alphabet, 'latin1');
  let x = seed;
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    buf[i] = letters[x % letters.length] as number;
  }
  return buf;
}

/** buf in chunks of 1 to maxChunk bytes. */
export function splitRandomly(buf: Buffer, seed: number, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  let x = seed;
  for (let from = 0; from < buf.length; ) {
    x = (x * 69069 + 1) & 0x7fffffff;
    const size = 1 + (x % maxChunk);
    chunks.push(buf.subarray(from, from + size));
    from += size;
  }
  return chunks;
}
