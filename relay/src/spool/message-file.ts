// One spooled message is one file, queue/<id>.msg: the message as received, then its
// envelope as JSON, then a fixed-size footer giving the envelope's length. One file
// means one create, one fsync, one rename and one unlink per message (a body file and
// an envelope file took twice each). After delivery attempts a newer envelope is kept
// beside it in <id>.json (written to .json.tmp, fsynced, renamed), which wins over the
// one in the file. Spools written before this layout hold <id>.eml (the body) and
// <id>.json (the envelope); they are read and delivered as they are.
import { createReadStream, lstatSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';

export const MESSAGE = '.msg';
/** The envelope beside a message: newer than its trailer, or the only one (older layout). */
export const ENVELOPE = '.json';
/** The body of a message spooled in the older two-file layout. */
export const LEGACY_BODY = '.eml';

const FOOTER_PREFIX = '\nSLUICE-ENVELOPE ';
const LENGTH_DIGITS = 10;
/** "\nSLUICE-ENVELOPE 0000000123\n" */
export const FOOTER_BYTES = FOOTER_PREFIX.length + LENGTH_DIGITS + 1;

/** What follows the body in a .msg file: the envelope and the footer. */
export function envelopeTrailer(envelope: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(envelope));
  const footer = `${FOOTER_PREFIX}${String(json.length).padStart(LENGTH_DIGITS, '0')}\n`;
  return Buffer.concat([json, Buffer.from(footer, 'latin1')]);
}

export class TrailerError extends Error {}

/** Reads the envelope at the end of a .msg file; the body is the bytes before it. */
export async function readTrailer(path: string): Promise<{ envelope: unknown; bodyBytes: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size < FOOTER_BYTES) throw new TrailerError(`${path}: too short for an envelope`);
    const footer = Buffer.alloc(FOOTER_BYTES);
    await handle.read(footer, 0, FOOTER_BYTES, size - FOOTER_BYTES);
    const text = footer.toString('latin1');
    const digits = text.slice(FOOTER_PREFIX.length, -1);
    if (!text.startsWith(FOOTER_PREFIX) || !text.endsWith('\n') || !/^\d+$/.test(digits)) {
      throw new TrailerError(`${path}: no envelope footer`);
    }
    const length = Number(digits);
    const bodyBytes = size - FOOTER_BYTES - length;
    if (bodyBytes < 0) throw new TrailerError(`${path}: envelope longer than the file`);
    const json = Buffer.alloc(length);
    await handle.read(json, 0, length, bodyBytes);
    try {
      return { envelope: JSON.parse(json.toString('utf8')), bodyBytes };
    } catch {
      throw new TrailerError(`${path}: envelope is not JSON`);
    }
  } finally {
    await handle.close();
  }
}

/** The message of a spool file (its first `bytes` bytes) as a stream. */
export function messageStream(path: string, bytes: number): Readable {
  return bytes > 0 ? createReadStream(path, { start: 0, end: bytes - 1 }) : Readable.from([]);
}

/** A spooled message with the header fields that travel in its envelope (a DKIM signature) in front. */
export function withHeaderPrefix(prefix: string | undefined, rest: Readable): Readable {
  if (!prefix) return rest;
  return Readable.from(
    (async function* () {
      yield Buffer.from(prefix, 'latin1');
      yield* rest;
    })(),
    { objectMode: false },
  );
}

/** A queued message's current envelope, as found on disk. */
export interface EnvelopeOnDisk {
  /** The envelope as parsed; undefined when it is not JSON. */
  envelope: unknown;
  /** How many bytes at the start of the message file are the message. */
  bodyBytes: number;
  /** Spooled in the older two-file layout (<id>.eml, <id>.json). */
  legacy: boolean;
  /** An envelope written after a delivery attempt sits beside the message (<id>.json). */
  beside: boolean;
  /**
   * The envelope inside the message file, as committed (current layout): what is left to
   * deliver from when the one beside it is damaged.
   */
  committed?: unknown;
}

/**
 * Which file holds a queued message's current envelope, by the layout rules above, and
 * what it says. `names` holds the message's names in the queue directory (looked up when not given). An
 * envelope beside a message file that cannot be read comes back as undefined, like one
 * that is not JSON: the message file still holds its committed envelope.
 */
export async function readEnvelope(
  queueDir: string,
  queueId: string,
  names?: ReadonlySet<string>,
): Promise<EnvelopeOnDisk> {
  // a look at the message's own names, never a listing of the whole queue
  const listing =
    names ??
    new Set(
      [MESSAGE, ENVELOPE, LEGACY_BODY]
        .map((ext) => `${queueId}${ext}`)
        .filter((name) => lstatSync(join(queueDir, name), { throwIfNoEntry: false }) !== undefined),
    );
  const besidePath = join(queueDir, `${queueId}${ENVELOPE}`);
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  };
  if (!listing.has(`${queueId}${MESSAGE}`)) {
    const envelope = parse(await readFile(besidePath, 'utf8'));
    const bodyBytes = (await stat(join(queueDir, `${queueId}${LEGACY_BODY}`))).size;
    return { envelope, bodyBytes, legacy: true, beside: false };
  }
  const inFile = await readTrailer(join(queueDir, `${queueId}${MESSAGE}`));
  const committed = inFile.envelope;
  if (!listing.has(`${queueId}${ENVELOPE}`)) {
    return { ...inFile, legacy: false, beside: false, committed };
  }
  const envelope = await readFile(besidePath, 'utf8').then(parse, () => undefined);
  return { envelope, bodyBytes: inFile.bodyBytes, legacy: false, beside: true, committed };
}

/**
 * A spooled message as it is on disk now, in either layout: its current envelope and its
 * bytes. For tools and tests; delivery streams.
 */
export async function readSpooled(
  queueDir: string,
  queueId: string,
): Promise<{ envelope: unknown; body: Buffer }> {
  const found = await readEnvelope(queueDir, queueId);
  const file = await readFile(join(queueDir, `${queueId}${found.legacy ? LEGACY_BODY : MESSAGE}`));
  return { envelope: found.envelope, body: file.subarray(0, found.bodyBytes) };
}
