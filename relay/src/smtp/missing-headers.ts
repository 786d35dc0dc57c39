// A submission server completes what a client left out (RFC 6409 8.2 and 8.3): a message
// without a Date or a Message-ID header gets one. Printers, scanners and scripts often
// send neither, and large receivers refuse mail without a Message-ID. It also removes
// Bcc and Resent-Bcc fields (RFC 5322 3.6.3), as Postfix does: scripts and printers send
// them expecting `sendmail -t`, and left in, every recipient would see the hidden ones.
// The header section is held until it ends, so the added fields go in front of it; a
// section that has not ended within the hold limit, or data that does not start with a
// header field, is passed on unchanged. Input is CRLF-only (after the line-end normaliser).

const MAX_HEADER_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const END_OF_HEADER = Buffer.from('\r\n\r\n');
/** A header field's first line: a name of printable characters but ":", then ":". */
const FIELD = /^[\x21-\x39\x3b-\x7e]+:/;
const DATE = /^date:/im;
/** The Message-ID field's first line, for the log (bounded: it is the client's text). */
const MESSAGE_ID_VALUE = /^message-id:[ \t]*([^\r\n]{0,250})/im;
const EIGHT_BIT = /[\x80-\xff]/;

export interface AddedFields {
  /** The Date field value to add, when one is missing. */
  date: () => string;
  /** The Message-ID field value to add, when one is missing. */
  messageId: () => string;
  /** Remove Bcc and Resent-Bcc fields (default false). */
  removeBcc?: boolean;
  /**
   * Header bytes held at most (default 64 KiB). Removing Bcc needs the whole header: hold
   * more than the size at which the message is refused for its header, so none passes.
   */
  holdBytes?: number;
}

/** Starts a Bcc or Resent-Bcc field. */
const BCC_FIELD = /^(resent-)?bcc[ \t]*:/i;

/**
 * The header without its Bcc and Resent-Bcc fields, folded lines included, and how many
 * went. One pass over the lines.
 */
export function withoutBcc(header: string): { header: string; removed: number } {
  const kept: string[] = [];
  let removed = 0;
  let dropping = false;
  for (let pos = 0; pos < header.length; ) {
    const next = header.indexOf('\r\n', pos);
    const end = next < 0 ? header.length : next + 2;
    const first = header.charCodeAt(pos);
    // a line that starts with a space or tab continues the field before it
    if (first !== 0x20 && first !== 0x09) {
      dropping = BCC_FIELD.test(header.slice(pos, Math.min(end, pos + 16)));
      if (dropping) removed++;
    }
    if (!dropping) kept.push(header.slice(pos, end));
    pos = end;
  }
  return removed === 0 ? { header, removed } : { header: kept.join(''), removed };
}

export class MissingHeaders {
  readonly #fields: AddedFields;
  /** The pieces of the header held so far; null once the header has gone on. */
  #held: Buffer[] | null = [];
  #heldBytes = 0;
  /** The last bytes held (at most 3), so an end of header split over pieces is found. */
  #tail: Buffer = Buffer.alloc(0);
  /** The names of the fields added, for the log. */
  readonly added: string[] = [];
  /** How many Bcc and Resent-Bcc fields were removed, for the log. */
  removedBcc = 0;
  /** The message's Message-ID as found or added, for the log; undefined when the header was not read. */
  messageId: string | undefined;
  readonly #holdBytes: number;
  /**
   * Whether the header has bytes outside ASCII (UTF-8 header values, RFC 6532); undefined
   * when the header was too long to hold and was not looked at.
   */
  eightBit: boolean | undefined = false;

  constructor(fields: AddedFields) {
    this.#fields = fields;
    this.#holdBytes = fields.holdBytes ?? MAX_HEADER_BYTES;
  }

  /**
   * The next piece of the message: what can go on now (nothing while the header is held).
   * Each piece is searched once, with the few bytes before it, and the held pieces are
   * joined once: the work is linear in the header however small the pieces.
   */
  take(chunk: Buffer): Buffer | null {
    const held = this.#held;
    if (held === null) return chunk;
    const probe = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    const probeStart = this.#heldBytes - this.#tail.length;
    // the header ends at the first empty line; the message may also start with one
    const found = probeStart === 0 && probe.subarray(0, 2).equals(CRLF) ? 0 : probe.indexOf(END_OF_HEADER);
    if (found >= 0) return this.#complete(this.#join(chunk), probeStart + found);
    if (this.#heldBytes + chunk.length < this.#holdBytes) {
      held.push(chunk);
      this.#heldBytes += chunk.length;
      this.#tail = Buffer.from(probe.subarray(Math.max(0, probe.length - 3)));
      return null;
    }
    const head = this.#join(chunk);
    this.#held = null;
    this.eightBit = undefined;
    return head;
  }

  /** At the end of the message: the header if it was still held (a message without a body). */
  end(): Buffer | null {
    if (this.#held === null) return null;
    const head = this.#join();
    return this.#complete(head, head.length);
  }

  /** What is held, and the piece that came with it, as one buffer. */
  #join(chunk?: Buffer): Buffer {
    const pieces = chunk ? [...(this.#held ?? []), chunk] : (this.#held ?? []);
    return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
  }

  #complete(whole: Buffer, headerBytes: number): Buffer {
    this.#held = null;
    let head = whole;
    let header = whole.subarray(0, headerBytes).toString('latin1');
    this.eightBit = EIGHT_BIT.test(header);
    if (headerBytes > 0 && !FIELD.test(header)) return head;
    if (this.#fields.removeBcc) {
      // the header ends before its last CRLF: a Bcc field last in it keeps its own line end
      const cut = withoutBcc(headerBytes < whole.length ? `${header}\r\n` : header);
      if (cut.removed > 0) {
        this.removedBcc = cut.removed;
        const rest = whole.subarray(Math.min(whole.length, headerBytes + 2));
        head = Buffer.concat([Buffer.from(cut.header, 'latin1'), rest]);
        header = cut.header;
      }
    }
    let fields = '';
    if (!DATE.test(header)) {
      fields += `Date: ${this.#fields.date()}\r\n`;
      this.added.push('Date');
    }
    const found = MESSAGE_ID_VALUE.exec(header);
    if (found) {
      this.messageId = found[1]?.trim();
    } else {
      this.messageId = this.#fields.messageId();
      fields += `Message-ID: ${this.messageId}\r\n`;
      this.added.push('Message-ID');
    }
    return fields === '' ? head : Buffer.concat([Buffer.from(fields, 'latin1'), head]);
  }
}
