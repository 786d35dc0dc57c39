// A submission server completes what a client left out (RFC 6409 8.2 and 8.3): a message
// without a Date or a Message-ID header gets one. Printers, scanners and scripts often
// send neither, and large receivers refuse mail without a Message-ID. The header section
// is held until it ends, so the added fields go in front of it; a section that has not
// ended within MAX_HEADER_BYTES, or data that does not start with a header field, is
// passed on unchanged. Input is CRLF-only (after the line-end normaliser).

const MAX_HEADER_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const END_OF_HEADER = Buffer.from('\r\n\r\n');
/** A header field's first line: a name of printable characters but ":", then ":". */
const FIELD = /^[\x21-\x39\x3b-\x7e]+:/;
const DATE = /^date:/im;
const MESSAGE_ID = /^message-id:/im;
const EIGHT_BIT = /[\x80-\xff]/;

export interface AddedFields {
  /** The Date field value to add, when one is missing. */
  date: () => string;
  /** The Message-ID field value to add, when one is missing. */
  messageId: () => string;
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
  /**
   * Whether the header has bytes outside ASCII (UTF-8 header values, RFC 6532); undefined
   * when the header was too long to hold and was not looked at.
   */
  eightBit: boolean | undefined = false;

  constructor(fields: AddedFields) {
    this.#fields = fields;
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
    if (this.#heldBytes + chunk.length < MAX_HEADER_BYTES) {
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

  #complete(head: Buffer, headerBytes: number): Buffer {
    this.#held = null;
    const header = head.subarray(0, headerBytes).toString('latin1');
    this.eightBit = EIGHT_BIT.test(header);
    if (headerBytes > 0 && !FIELD.test(header)) return head;
    let fields = '';
    if (!DATE.test(header)) {
      fields += `Date: ${this.#fields.date()}\r\n`;
      this.added.push('Date');
    }
    if (!MESSAGE_ID.test(header)) {
      fields += `Message-ID: ${this.#fields.messageId()}\r\n`;
      this.added.push('Message-ID');
    }
    return fields === '' ? head : Buffer.concat([Buffer.from(fields, 'latin1'), head]);
  }
}
