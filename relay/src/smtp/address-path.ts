// Quoted local parts in MAIL FROM and RCPT TO (RFC 5321 4.1.2: Local-part = Dot-string /
// Quoted-string), which smtp-server's address parser refuses: it splits the command at
// white space and the address at every "@". The connection hands smtp-server the command
// with the quoted string replaced by a stand-in of plain letters, and puts the quoted
// string back into the address it parsed, so the address is kept, stored and delivered
// exactly as the client quoted it.

/** A command whose path starts with a quoted local part: the command with a stand-in for it. */
export interface QuotedPath {
  command: string;
  quoted: string;
  standIn: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * qtextSMTP (RFC 5321 4.1.2; RFC 6531 3.3 adds UTF-8), less "<" and ">", which an address
 * on the way out cannot carry (the next hop's command puts the path in angle brackets, and
 * the client that writes it refuses them).
 */
function isQtext(code: number): boolean {
  return (
    code === 32 ||
    code === 33 ||
    (code >= 35 && code <= 126 && code !== 60 && code !== 62 && code !== BACKSLASH) ||
    code >= 0x80
  );
}

/** The end (index of the closing quote) of a Quoted-string starting at `start`, or -1. */
function quotedStringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) return i;
    if (code === BACKSLASH) {
      // quoted-pairSMTP: a backslash and one printable ASCII character
      const next = text.charCodeAt(i + 1);
      if (!(next >= 32 && next <= 126)) return -1;
      i++;
      continue;
    }
    if (!isQtext(code)) return -1;
  }
  return -1;
}

/** Where the path's local part starts with a quote ("MAIL FROM:<\"..."), or -1. */
function quoteAt(command: string): number {
  const colon = command.indexOf(':');
  if (colon === -1) return -1;
  let open = colon + 1;
  while (command[open] === ' ') open++;
  return command[open] === '<' && command[open + 1] === '"' ? open + 1 : -1;
}

/**
 * For "MAIL FROM:<"a b"@example.net> ..." (or RCPT TO), the command with the quoted local
 * part replaced by letters of the same length; undefined when the path has no quoted local
 * part or it is not a valid Quoted-string.
 */
export function quotedPath(command: string): QuotedPath | undefined {
  const start = quoteAt(command);
  if (start === -1) return undefined;
  const end = quotedStringEnd(command, start);
  if (end === -1 || command[end + 1] !== '@') return undefined;
  const quoted = command.slice(start, end + 1);
  const standIn = 'q'.repeat(quoted.length);
  return { command: command.slice(0, start) + standIn + command.slice(end + 1), quoted, standIn };
}

/** What smtp-server's _parseAddressCommand returns: the address and its parameters, or false. */
type Parsed<T extends { address: string }> = T | false;

/**
 * smtp-server's address parsing (`parse`), with a quoted local part taken as it is: the
 * stand-in goes through smtp-server's checks, the quoted string comes back in the address.
 */
export function parseQuotedPath<T extends { address: string }>(
  rawName: string,
  rawCommand: Buffer | string,
  parse: (rawName: string, rawCommand: Buffer | string) => Parsed<T>,
): Parsed<T> {
  const command = rawCommand.toString();
  const path = quotedPath(command);
  // a local part that starts with a quote and is no Quoted-string is no Dot-string either
  if (!path) return quoteAt(command) === -1 ? parse(rawName, rawCommand) : false;
  const parsed = parse(rawName, path.command);
  if (parsed === false || !parsed.address.startsWith(`${path.standIn}@`)) return parsed;
  return { ...parsed, address: path.quoted + parsed.address.slice(path.standIn.length) };
}
