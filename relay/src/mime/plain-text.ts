// Which messages need no MIME parse to be checked for attachments: those that are one
// plain text part, said by their header alone. mailsplit would find one part, no file name
// and a text type, and hand its body to the search for uuencoded files, which is all the
// attachment check does with it; so the body can go there at once. The test is strict:
// anything it is not sure of (a Content-Disposition other than a bare "inline", a second
// Content-Type, a folded or encoded one, a parameter other than the few below, base64 or
// quoted-printable, a header near a MIME limit) goes to mailsplit as before. A test
// compares both ways on generated messages, and so does a fuzz target.
import { NAMES_A_FILE } from './filename.ts';
import { parseHeaderBlock } from './header-block.ts';
import { count, type MimeLimits } from './splitter.ts';

const LF = 0x0a;
/** The empty line after a line: what ends a header (mailsplit takes "\n" or "\r\n" alone). */
const EMPTY_LINES = [Buffer.from('\n\n'), Buffer.from('\n\r\n')] as const;

/**
 * One unfolded text type, with no parameter but the few that say how text is written,
 * each a plain token. mailsplit reads a boundary parameter on any type, text/plain too,
 * and then splits the body at it (the fuzzer found a text/plain part holding an .exe
 * that way), so anything else on the line goes to mailsplit.
 */
const PLAIN_TYPE =
  /^content-type[ \t]*:[ \t]*text\/[a-z0-9!#$&^_.+-]+(?:[ \t]*;[ \t]*(?:charset|format|delsp|reply-type)[ \t]*=[ \t]*(?:"[a-z0-9!#$&^_.+-]*"|[a-z0-9!#$&^_.+-]+))*(?:[ \t]*;)?[ \t]*$/i;
/** A longer Content-Type line goes to mailsplit (and the expressions here look at short lines only). */
const MAX_FIELD = 1000;
/** A bare inline disposition, which names no file and changes nothing for a text part. */
const INLINE = /^content-disposition[ \t]*:[ \t]*inline[ \t]*$/i;
/** A body that needs no decoding to be read. */
const PLAIN_ENCODING = /^content-transfer-encoding[ \t]*:[ \t]*(?:7bit|8bit|binary)[ \t]*$/i;

/**
 * Where the header ends in the bytes seen so far, kept as `seen` (the message's start):
 * the offset just past its empty line, or -1 while none has come. `from` is how many
 * bytes were already searched, so a header that comes in many pieces is not searched
 * again from its start each time.
 */
export function headerEnd(seen: Buffer, from = 0): number {
  // the message's first line starts the header too: an empty one is an empty header
  if (from === 0 && seen[0] === LF) return 1;
  if (from === 0 && seen[0] === 0x0d && seen[1] === LF) return 2;
  let end = -1;
  for (const empty of EMPTY_LINES) {
    const at = seen.indexOf(empty, Math.max(0, from - empty.length + 1));
    if (at !== -1 && (end === -1 || at + empty.length < end)) end = at + empty.length;
  }
  return end;
}

/** Whether a message with this header (its empty line included) is one plain text part. */
export function isPlainText(header: Buffer, limits: MimeLimits): boolean {
  if (header.length > limits.maxHeaderBytes) return false;
  if (count(header, LF) > limits.maxHeaderLines) return false;
  const block = parseHeaderBlock(header);
  if (block.mbox !== false || block.http !== false) return false;
  let type: string | undefined;
  let encoding: string | undefined;
  let disposition = false;
  for (const field of block.fields) {
    if (field.key === 'content-disposition') {
      if (disposition || field.line.length > MAX_FIELD || !INLINE.test(field.line)) return false;
      disposition = true;
    } else if (field.key === 'content-type') {
      if (type !== undefined) return false;
      type = field.line;
    } else if (field.key === 'content-transfer-encoding') {
      if (encoding !== undefined) return false;
      encoding = field.line;
    }
  }
  if (type !== undefined) {
    if (type.length > MAX_FIELD || !PLAIN_TYPE.test(type) || NAMES_A_FILE.test(type)) return false;
    if (type.split(';').length - 1 > limits.maxMimeParameters) return false;
  }
  return encoding === undefined || (encoding.length <= MAX_FIELD && PLAIN_ENCODING.test(encoding));
}
