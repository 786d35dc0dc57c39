// DKIM signing (RFC 6376, RFC 8463) of a message as it streams into the spool: the header
// block is held (it is bounded by limits.maxHeaderBytes), the body only runs through the
// body hash, so a 30 MB message costs no more memory than a small one. The signature is
// made once the message has ended, and travels in the envelope (SpooledEnvelope.headerPrefix):
// delivery sends it in front of the spooled bytes.
import { createHash, sign } from 'node:crypto';
import bodyHashes from 'mailauth/lib/dkim/body/index.js';
import tools from 'mailauth/lib/tools.js';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { type DkimKey, type DkimKeys, keysFor } from './keys.ts';

/** Signed header fields; From is listed once more than it occurs (oversigned), so none can be added. */
export const SIGNED_FIELDS = [
  'From',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'Reply-To',
  'MIME-Version',
  'Content-Type',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
] as const;

export type DkimOutcome =
  | { signed: true; domain: string; selector: string; algorithms: string[]; header: string }
  /** fromDomain: the header From domain, where it was read. */
  | { signed: false; reason: 'no_key' | 'no_from' | 'header_too_big'; fromDomain?: string };

export interface HeaderField {
  name: string;
  line: Buffer;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Splits a CRLF header block into fields, folded lines joined. */
function parseHeader(block: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  const lines = block.toString('latin1').split('\r\n');
  for (const line of lines) {
    if (line === '') continue;
    const last = fields.at(-1);
    if (/^[ \t]/.test(line) && last) {
      last.line = Buffer.concat([last.line, Buffer.from(`\r\n${line}`, 'latin1')]);
      continue;
    }
    const colon = line.indexOf(':');
    fields.push({ name: colon > 0 ? line.slice(0, colon).trim() : line, line: Buffer.from(line, 'latin1') });
  }
  return fields;
}

/** The domain of the (first) address in the header From, or undefined. */
export function fromDomain(fields: readonly HeaderField[]): string | undefined {
  const from = fields.find((f) => f.name.toLowerCase() === 'from');
  if (!from) return undefined;
  const value = Buffer.from(from.line)
    .toString('utf8')
    .replace(/^[^:]*:/, '');
  const address = addressparser(value, { flatten: true })[0]?.address ?? '';
  const at = address.lastIndexOf('@');
  return at > 0 ? address.slice(at + 1).toLowerCase() : undefined;
}

/** One DKIM-Signature field (folded, no line end) for the header and body hash given. */
export function signatureFor(
  key: DkimKey,
  fields: readonly HeaderField[],
  bodyHash: string,
  now: Date,
): string {
  // RFC 6376 5.4.2: the bottom-most instance first; a name with no instance left adds nothing
  const used: HeaderField[] = [];
  const names: string[] = [];
  const pool = [...fields];
  for (const wanted of SIGNED_FIELDS) {
    for (let i = pool.length - 1; i >= 0; i--) {
      const field = pool[i];
      if (field && field.name.toLowerCase() === wanted.toLowerCase()) {
        used.push(field);
        names.push(wanted);
        pool.splice(i, 1);
        i = pool.length; // the next instance of the same name, bottom-up
      }
    }
  }
  names.push('From');
  const values: Record<string, string | number> = {
    a: key.algorithm,
    c: 'relaxed/relaxed',
    s: key.selector,
    d: key.domain,
    h: names.join(':'),
    bh: bodyHash,
    t: Math.floor(now.getTime() / 1000),
  };
  const unsigned = tools.formatSignatureHeaderLine('DKIM', { b: 'a'.repeat(73), ...values }, true);
  const canonical = Buffer.concat([
    ...used.map((f) => tools.formatRelaxedLine(f.line, '\r\n')),
    Buffer.from(
      tools
        .formatRelaxedLine(unsigned)
        .toString('latin1')
        .replace(/([;:\s]+b=)[^;]+/, '$1'),
      'latin1',
    ),
  ]);
  const b =
    key.algorithm === 'rsa-sha256'
      ? sign('sha256', canonical, key.key)
      : // RFC 8463 3: Ed25519 signs the SHA-256 hash of the canonical header
        sign(null, createSha256(canonical), key.key);
  return tools.formatSignatureHeaderLine('DKIM', { ...values, b: b.toString('base64') }, true);
}

function createSha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * Fed beside the spool write (update() with each piece of the message as stored, CRLF line
 * ends, then end()): gives the DKIM-Signature fields to put in front of it, or why there
 * are none. A plain object, not a stream: it never waits, so the receiving path calls it
 * directly rather than through a pipe.
 */
export class MessageSigner {
  readonly #keys: DkimKeys;
  readonly #maxHeaderBytes: number;
  readonly #now: () => Date;
  #head: Buffer[] = [];
  #headBytes = 0;
  #fields: HeaderField[] | undefined;
  #header: HeaderField[] | undefined;
  #signWith: readonly DkimKey[] = [];
  #hasher: ReturnType<typeof bodyHashes.dkimBody> | undefined;
  #outcome: DkimOutcome | undefined;

  #ended = false;

  constructor(keys: DkimKeys, options: { maxHeaderBytes: number; now?: () => Date }) {
    this.#keys = keys;
    this.#maxHeaderBytes = options.maxHeaderBytes;
    this.#now = options.now ?? (() => new Date());
  }

  /** The next piece of the message. */
  update(chunk: Buffer): void {
    if (this.#outcome || this.#ended) return;
    if (this.#fields) {
      this.#hasher?.update(chunk);
      return;
    }
    // the end of the header may straddle chunks: search from 3 bytes before this one
    const from = Math.max(0, this.#headBytes - 3);
    this.#head.push(chunk);
    this.#headBytes += chunk.length;
    // nearly always the whole header is in the first piece: no copy of it
    const held = this.#head.length === 1 ? chunk : Buffer.concat(this.#head);
    this.#head = [held];
    const end = held.indexOf(CRLFCRLF, from);
    if (end < 0) {
      if (this.#headBytes > this.#maxHeaderBytes) this.#giveUp('header_too_big');
      return;
    }
    this.#startBody(held.subarray(0, end + 2), held.subarray(end + 4));
  }

  /** The message has ended: the signatures are made (once; later calls do nothing). */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#outcome && !this.#fields) {
      // a message that is all header: its body is empty
      this.#startBody(Buffer.concat(this.#head), Buffer.alloc(0));
    }
    if (!this.#outcome && this.#fields && this.#hasher) {
      const bodyHash = this.#hasher.digest('base64');
      const now = this.#now();
      const fields = this.#fields;
      const headers = this.#signWith.map((key) => signatureFor(key, fields, bodyHash, now));
      const first = this.#signWith[0];
      if (first) {
        this.#outcome = {
          signed: true,
          domain: first.domain,
          selector: first.selector,
          algorithms: this.#signWith.map((k) => k.algorithm),
          header: headers.map((h) => `${h}\r\n`).join(''),
        };
      }
    }
  }

  /**
   * The message's header fields (folded lines joined), whether or not it is signed; once the
   * message has ended. Undefined when the header was over limits.maxHeaderBytes.
   */
  get header(): readonly HeaderField[] | undefined {
    return this.#header;
  }

  /** The unfolded value of every field named `name` (case-insensitive), header bytes read as UTF-8. */
  values(name: string): string[] {
    const wanted = name.toLowerCase();
    return (this.#header ?? [])
      .filter((f) => f.name.toLowerCase() === wanted)
      .map((f) =>
        Buffer.from(f.line)
          .toString('utf8')
          .replace(/^[^:]*:/, '')
          .replace(/\r\n/g, ''),
      );
  }

  /** What signing came to; valid once end() was called. */
  get outcome(): DkimOutcome {
    return this.#outcome ?? { signed: false, reason: 'no_key' };
  }

  #giveUp(reason: 'no_key' | 'no_from' | 'header_too_big', fromDomain?: string): void {
    this.#outcome = { signed: false, reason, ...(fromDomain === undefined ? {} : { fromDomain }) };
    this.#head = [];
  }

  #startBody(header: Buffer, body: Buffer): void {
    this.#head = [];
    const fields = parseHeader(header);
    this.#header = fields;
    const domain = fromDomain(fields);
    if (domain === undefined && this.#keys.defaultSigner.length === 0) return this.#giveUp('no_from');
    const keys = keysFor(this.#keys, domain);
    if (keys.length === 0) return this.#giveUp('no_key', domain);
    this.#fields = fields;
    this.#signWith = keys;
    this.#hasher = bodyHashes.dkimBody('relaxed', 'sha256', false);
    if (body.length) this.#hasher.update(body);
  }
}
