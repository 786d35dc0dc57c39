// File names as mail clients may read them from MIME headers, and the extension test.
// Clients disagree on duplicate parameters, RFC 2231 versus legacy fallbacks and
// backslashes, so we collect every plausible reading and block if any of them is blocked.

import libmime from 'libmime';

const FILENAME_PARAMS: ReadonlySet<string> = new Set(['filename', 'name']);

/**
 * Every parameter that carries a file name has "name" in its key (name, filename, and
 * their RFC 2231 forms name*, filename*0*, ...), and unfolding a header cannot make one:
 * a header line without it names no file, and most (boundaries, charsets) have none.
 */
export const NAMES_A_FILE = /name/i;

/** Lower-case, dot-less extensions, e.g. `['.EXE', 'Bat']` → `{'exe', 'bat'}`. */
export function normaliseExtensions(extensions: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const ext of extensions) {
    const clean = ext.trim().replace(/^\.+/, '').toLowerCase();
    if (clean !== '') out.add(clean);
  }
  return out;
}

/** The blocked extension of a decoded file name, or null. `blocked` holds lower-case extensions without dots. */
export function blockedExtension(filename: string, blocked: ReadonlySet<string>): string | null {
  // A C-string consumer stops at NUL, so "evil.exe\0.pdf" is also read as "evil.exe".
  const nul = filename.indexOf('\0');
  const readings = nul === -1 ? [filename] : [filename, filename.slice(0, nul)];
  for (const reading of readings) {
    for (const name of namesIn(reading)) {
      const ext = extensionOf(name);
      if (ext !== null && blocked.has(ext)) return ext;
    }
  }
  return null;
}

/**
 * The names in a path's last segment. NTFS reads "name:stream:type", and writing to any
 * stream of evil.exe makes evil.exe ("evil.exe::$DATA" is the file itself, "evil.exe:",
 * "evil.exe:x" and "evil.exe:x:$DATA" create it), so each name around a colon counts; a
 * drive ("C:evil.exe") is read the same way.
 */
function namesIn(path: string): string[] {
  return (path.split(/[/\\]/).pop() ?? '').split(':');
}

/** The extension Windows would act on: trailing dots and spaces dropped. */
function extensionOf(name: string): string | null {
  // Windows silently strips trailing dots and spaces: "evil.exe . " is saved as "evil.exe".
  const trimmed = name.replace(/[\s.]+$/u, '');
  const dot = trimmed.lastIndexOf('.');
  if (dot === -1) return null;
  const ext = trimmed.slice(dot + 1).toLowerCase();
  return ext === '' ? null : ext;
}

/**
 * Every file name a Content-Type or Content-Disposition header value (unfolded, without
 * the header name) can be read as, decoded (RFC 2047 words, RFC 2231 continuations).
 */
export function headerFileNames(headerValue: string): string[] {
  const names = new Set<string>();
  const add = (value: string | undefined): void => {
    if (value === undefined || value === '') return;
    names.add(decodeWords(value));
    names.add(value);
  };

  // The canonical reading: libmime assembles continuations and prefers `filename*`.
  const parsed = parseParams(headerValue);
  for (const key of FILENAME_PARAMS) add(parsed?.params[key]);

  // Each parameter on its own: duplicates (libmime keeps the first, some clients the
  // last), the plain fallback that an RFC 2231 value overrides, and the literal value
  // for clients that do not treat backslash as an escape.
  for (const segment of splitParams(headerValue)) {
    const eq = segment.indexOf('=');
    if (eq === -1) continue;
    const key = segment.slice(0, eq).trim().toLowerCase();
    if (!FILENAME_PARAMS.has(key.replace(/\*.*$/, ''))) continue;
    const single = parseParams(`x; ${segment}`);
    for (const value of Object.values(single?.params ?? {})) add(value);
    const literal = segment
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/s, '$1');
    if (!key.includes('*')) add(literal);
  }
  return [...names];
}

function parseParams(value: string): { params: Record<string, string> } | null {
  try {
    return libmime.parseHeaderValue(value);
  } catch {
    return null;
  }
}

function decodeWords(value: string): string {
  // every rewrite libmime makes needs an encoded word ("=?") or its own joining marker;
  // most names have neither, and its five regular expressions cost ~1 % at 10 KB
  if (!value.includes('=?') && !value.includes('__\x00JOIN\x00__')) return value;
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/** Split a header value on the semicolons that are not inside a quoted string. */
function splitParams(value: string): string[] {
  const segments: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const chr = value[i];
    if (quoted && chr === '\\') i++;
    else if (chr === '"') quoted = !quoted;
    else if (!quoted && chr === ';') {
      segments.push(value.slice(start, i));
      start = i + 1;
    }
  }
  segments.push(value.slice(start));
  return segments.map((segment) => segment.trim()).filter((segment) => segment !== '');
}
