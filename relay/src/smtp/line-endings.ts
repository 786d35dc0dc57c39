// SMTP smuggling defence: the relay stores and forwards only CRLF line endings. A bare
// LF or a bare CR in the body becomes CRLF here, so once delivery dot-stuffs the
// message, no sequence in it can look like an end-of-data marker to any server
// downstream (e.g. "\n.\n" or "\r.\r" becomes "\r\n.\r\n", which is then sent as
// "\r\n..\r\n"). Counts what it changed so the session log can say so. A plain object
// called with each piece of DATA (normalise(), then flushPending() at the end), not a stream.

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
/** A bare CR (also one ending the chunk) or a bare LF (also one starting it). */
const BARE = /\r(?!\n)|(?<!\r)\n/;

export class LineEndingNormaliser {
  /** Bare LF line endings rewritten to CRLF. */
  bareLf = 0;
  /** Bare CR line endings rewritten to CRLF. */
  bareCr = 0;
  #pendingCr = false;

  /** At the end of the input: a CR still waiting for its LF got none, so it becomes CRLF. */
  flushPending(): Buffer | null {
    if (!this.#pendingCr) return null;
    this.#pendingCr = false;
    this.bareCr++;
    return CRLF;
  }

  /** The next piece of the input, normalised (a CR at its end waits for the next piece). */
  normalise(chunk: Buffer): Buffer {
    // Nearly every chunk has only CRLF pairs. One regular-expression search over a latin1
    // view (native code, a copy and a scan) says so at about half the cost of finding
    // each line end with two indexOf calls from JavaScript.
    if (!this.#pendingCr && !BARE.test(chunk.toString('latin1'))) return chunk;
    const parts: Buffer[] = [];
    let start = 0;
    let i = 0;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      parts.push(CRLF);
      if (chunk[0] === LF) {
        i = 1;
      } else {
        this.bareCr++;
      }
      start = i;
    }
    const len = chunk.length;
    while (i < len) {
      // indexOf runs in native code; most chunks hold only well-formed CRLF pairs
      const nextCr = chunk.indexOf(CR, i);
      const nextLf = chunk.indexOf(LF, i);
      if (nextCr === -1 && nextLf === -1) break;
      if (nextLf !== -1 && (nextCr === -1 || nextLf < nextCr)) {
        // LF with no CR right before it (a CRLF pair is consumed in the CR branch)
        parts.push(chunk.subarray(start, nextLf), CRLF);
        this.bareLf++;
        i = start = nextLf + 1;
        continue;
      }
      if (nextCr === len - 1) {
        // the LF, if any, is in the next chunk
        parts.push(chunk.subarray(start, nextCr));
        this.#pendingCr = true;
        return Buffer.concat(parts);
      }
      if (chunk[nextCr + 1] === LF) {
        i = nextCr + 2;
        continue;
      }
      parts.push(chunk.subarray(start, nextCr), CRLF);
      this.bareCr++;
      i = start = nextCr + 1;
    }
    if (parts.length === 0) return chunk;
    parts.push(chunk.subarray(start));
    return Buffer.concat(parts);
  }
}
