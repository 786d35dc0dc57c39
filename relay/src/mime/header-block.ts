// A part's header block cut into fields, in one pass. It gives what mailsplit's
// Headers._parseHeaders gives (each field as its raw folded text, "\r\n" between its
// lines; a first line "From ..." or "POST ..." set aside), but mailsplit builds it bottom
// up, appending each field to the folded line above it, so V8 flattens a longer string
// at every folded line: 100,000 folded lines (400 KB) took 14 s. Here every line is
// looked at once and each field's text is joined once: linear in the block's size.

export interface HeaderField {
  /** The field name, lower case, trimmed ('' when the line has no colon). */
  key: string;
  /** The field as it came, continuation lines included. */
  line: string;
}

export interface HeaderBlock {
  fields: HeaderField[];
  /** A first line starting "From " (an mbox separator), else false. */
  mbox: string | false;
  /** A first line starting "POST " (an HTTP request line), else false. */
  http: string | false;
}

const CR = 0x0d;
const LF = 0x0a;

/** The fields of a raw header block (bytes read as latin1, as mailsplit keeps them). */
export function parseHeaderBlock(raw: Buffer): HeaderBlock {
  // the line breaks at the end go (without a regular expression: /[\r\n]+$/ backtracks
  // over every run of line breaks, quadratic in a long run)
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === CR || raw[end - 1] === LF)) end--;
  const lines = raw.toString('latin1', 0, end).split(/\r?\n/);
  const fields: HeaderField[] = [];
  let mbox: string | false = false;
  let http: string | false = false;
  for (let i = 0; i < lines.length; ) {
    // a field: this line and the continuation lines (starting with a space or tab) after it
    let next = i + 1;
    while (next < lines.length && isContinuation(lines[next] ?? '')) next++;
    const line = next === i + 1 ? (lines[i] ?? '') : lines.slice(i, next).join('\r\n');
    if (i === 0 && /^From /i.test(line)) mbox = line;
    else if (i === 0 && /^POST /i.test(line)) http = line;
    else {
      const colon = line.indexOf(':');
      fields.push({ key: colon === -1 ? '' : line.slice(0, colon).toLowerCase().trim(), line });
    }
    i = next;
  }
  return { fields, mbox, http };
}

function isContinuation(line: string): boolean {
  const first = line.charCodeAt(0);
  return first === 0x20 || first === 0x09;
}
