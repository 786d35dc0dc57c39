// Finding the dots that start a line, the only places where DATA encoding and decoding
// change anything. Most of a large message is base64, which has no dots at all, so one
// native search for "." (memchr) usually settles a whole chunk; searching for "\n." would
// stop at every line end. Text has dots in the middle of lines too: after a few of those
// in one buffer, the search goes over to "\n.".

const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');
/** Mid-line dots in one buffer before searching for "\n." instead. */
const MAX_MISSES = 8;

export class LineDots {
  readonly #buf: Buffer;
  #misses = 0;

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  /** Where the next "\n." at or after `from` is (the LF's index), or -1: as buf.indexOf("\n.", from). */
  next(from: number): number {
    const buf = this.#buf;
    if (this.#misses >= MAX_MISSES) return buf.indexOf(LF_DOT, from);
    for (let dot = buf.indexOf(DOT, from + 1); dot !== -1; dot = buf.indexOf(DOT, dot + 1)) {
      if (buf[dot - 1] === LF) return dot - 1;
      // every dot before this one has been looked at: no "\n." starts before it
      if (++this.#misses >= MAX_MISSES) return buf.indexOf(LF_DOT, dot);
    }
    return -1;
  }
}
