// PROXY protocol (HAProxy spec, v1 text and v2 binary) for listeners behind a load
// balancer: reads the header a trusted proxy sends before the SMTP session so the relay
// sees the real client address. Only the header is consumed; the session's bytes stay
// on the socket for whoever reads it next.
//
// v2 PROXY commands for UDP or UNIX sockets are rejected, not treated as 'local': SMTP
// never travels over UDP, and a connection whose client has no IP address would
// otherwise be attributed to the load balancer itself, bypassing per-client policy.

import { isIPv4, isIPv6, type Socket, SocketAddress } from 'node:net';
import { SluiceError } from '../errors.ts';

export type ProxyInfo =
  | {
      kind: 'proxied';
      remoteAddress: string;
      remotePort: number;
      localAddress: string;
      localPort: number;
      version: 1 | 2;
    }
  | { kind: 'local'; version: 1 | 2 }; // v1 'PROXY UNKNOWN' and v2 LOCAL / AF_UNSPEC: use the socket's own address

type Parsed = { complete: false } | { complete: true; info: ProxyInfo; length: number };

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_MAX_LENGTH = 107; // including the CRLF
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_LENGTH = 16;
const V2_COMMAND_LOCAL = 0x20;
const V2_COMMAND_PROXY = 0x21;
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;
const V2_UNSPEC = 0x00;
const V2_UNSUPPORTED_FAMILIES: ReadonlyMap<number, string> = new Map([
  [0x12, 'UDP over IPv4'],
  [0x22, 'UDP over IPv6'],
  [0x31, 'UNIX stream'],
  [0x32, 'UNIX datagram'],
]);

/**
 * Reads exactly the PROXY header from the socket; any bytes after it are unshifted back so the
 * SMTP session sees them. Rejects with SluiceError('SLUICE_ERR_PROXY_HEADER', …) on a malformed
 * header, a non-PROXY first line, a header over the spec's length (107 bytes for v1), the socket
 * closing first, or the timeout. The socket is left open either way; the caller decides its fate.
 */
export function readProxyHeader(socket: Socket, options: { timeoutMs: number }): Promise<ProxyInfo> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    let settled = false;

    const finish = (outcome: { info: ProxyInfo; rest: Buffer } | { error: SluiceError }): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if ('error' in outcome) {
        reject(outcome.error);
        return;
      }
      if (outcome.rest.length > 0) {
        socket.unshift(outcome.rest);
      }
      resolve(outcome.info);
    };

    const onReadable = (): void => {
      // read() hands over everything buffered, which may run past the header when the client
      // pipelines; the excess goes back with unshift() once the header's end is known.
      for (let chunk = socket.read() as Buffer | string | null; chunk !== null; chunk = socket.read()) {
        received = Buffer.concat([received, typeof chunk === 'string' ? Buffer.from(chunk) : chunk]);
        let parsed: Parsed;
        try {
          parsed = parseProxyHeader(received);
        } catch (err: unknown) {
          finish({ error: asProxyError(err) });
          return;
        }
        if (parsed.complete) {
          finish({ info: parsed.info, rest: received.subarray(parsed.length) });
          return;
        }
      }
    };
    const onEnd = (): void => {
      finish({
        error: proxyError(`connection closed after ${received.length} bytes, before the header ended`),
      });
    };
    const onError = (err: Error): void => {
      finish({ error: proxyError(`socket error before the header ended: ${err.message}`, err) });
    };

    const timer = setTimeout(() => {
      finish({ error: proxyError(`no complete header within ${options.timeoutMs} ms`) });
    }, options.timeoutMs);

    if (socket.destroyed || socket.readableEnded) {
      finish({ error: proxyError('connection closed before the header ended') });
      return;
    }
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

/** Decides from the bytes so far: header incomplete, header complete (and how long), or malformed (throws). */
function parseProxyHeader(buf: Buffer): Parsed {
  if (startsLike(buf, V2_SIGNATURE)) {
    return buf.length < V2_SIGNATURE.length ? { complete: false } : parseV2(buf);
  }
  if (startsLike(buf, V1_PREFIX)) {
    return parseV1(buf);
  }
  throw proxyError(`expected a PROXY header, got ${describe(buf)}`);
}

function parseV1(buf: Buffer): Parsed {
  const lf = buf.indexOf(0x0a);
  if (lf === -1 || lf >= V1_MAX_LENGTH) {
    if (buf.length >= V1_MAX_LENGTH) {
      throw proxyError(`v1 header longer than ${V1_MAX_LENGTH} bytes`);
    }
    return { complete: false };
  }
  if (buf[lf - 1] !== 0x0d) {
    throw proxyError('v1 header does not end in CRLF');
  }
  const line = buf.toString('latin1', 0, lf - 1);
  const fields = line.split(' ');
  const protocol = fields[1];
  if (protocol === 'UNKNOWN') {
    // The spec lets a sender put anything after UNKNOWN; the receiver ignores it.
    return { complete: true, info: { kind: 'local', version: 1 }, length: lf + 1 };
  }
  if (protocol !== 'TCP4' && protocol !== 'TCP6') {
    throw proxyError(`v1 header has unknown protocol ${JSON.stringify(protocol ?? '')}`);
  }
  const [, , source, destination, sourcePort, destinationPort, ...extra] = fields;
  if (
    source === undefined ||
    destination === undefined ||
    sourcePort === undefined ||
    destinationPort === undefined ||
    extra.length > 0
  ) {
    throw proxyError(
      `v1 ${protocol} header needs exactly two addresses and two ports: ${JSON.stringify(line)}`,
    );
  }
  const isAddress = protocol === 'TCP4' ? isIPv4 : isIPv6;
  for (const address of [source, destination]) {
    // A zone id ('fe80::1%eth0') passes isIPv6 but is not part of the spec's address format.
    if (!isAddress(address) || address.includes('%')) {
      throw proxyError(`v1 header has an invalid ${protocol} address ${JSON.stringify(address)}`);
    }
  }
  return {
    complete: true,
    info: {
      kind: 'proxied',
      remoteAddress: source,
      remotePort: parsePort(sourcePort),
      localAddress: destination,
      localPort: parsePort(destinationPort),
      version: 1,
    },
    length: lf + 1,
  };
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port > 65535) {
    throw proxyError(`v1 header has an invalid port ${JSON.stringify(text)}`);
  }
  return port;
}

function parseV2(buf: Buffer): Parsed {
  const command = buf[12];
  const family = buf[13];
  if (command !== undefined && command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) {
    throw proxyError(`v2 header has an unsupported version/command byte 0x${hex(command)}`);
  }
  // The receiver must ignore the address block of a LOCAL command, whatever its family.
  if (command === V2_COMMAND_PROXY && family !== undefined) {
    const unsupported = V2_UNSUPPORTED_FAMILIES.get(family);
    if (unsupported !== undefined) {
      throw proxyError(`v2 header proxies ${unsupported}, which an SMTP listener cannot serve`);
    }
    if (family !== V2_TCP4 && family !== V2_TCP6 && family !== V2_UNSPEC) {
      throw proxyError(`v2 header has an invalid family/protocol byte 0x${hex(family)}`);
    }
  }
  if (buf.length < V2_FIXED_LENGTH) {
    return { complete: false };
  }
  // Everything after the fixed part — addresses and any TLVs — is covered by this length.
  const length = V2_FIXED_LENGTH + buf.readUInt16BE(14);
  if (buf.length < length) {
    return { complete: false };
  }
  if (command === V2_COMMAND_LOCAL || family === V2_UNSPEC) {
    return { complete: true, info: { kind: 'local', version: 2 }, length };
  }
  const body = buf.subarray(V2_FIXED_LENGTH, length);
  const addressBytes = family === V2_TCP4 ? 4 : 16;
  const blockLength = 2 * addressBytes + 4;
  if (body.length < blockLength) {
    throw proxyError(`v2 header length ${body.length} is too short for its addresses (${blockLength})`);
  }
  const formatAddress = family === V2_TCP4 ? formatIPv4 : formatIPv6;
  return {
    complete: true,
    info: {
      kind: 'proxied',
      remoteAddress: formatAddress(body.subarray(0, addressBytes)),
      localAddress: formatAddress(body.subarray(addressBytes, 2 * addressBytes)),
      remotePort: body.readUInt16BE(2 * addressBytes),
      localPort: body.readUInt16BE(2 * addressBytes + 2),
      version: 2,
    },
    length,
  };
}

function formatIPv4(bytes: Buffer): string {
  return bytes.join('.');
}

/** Canonical text (RFC 5952, '::ffff:a.b.c.d' for mapped), the way Node reports socket addresses. */
function formatIPv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(bytes.readUInt16BE(i).toString(16));
  }
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** True when buf and prefix agree on their common length: buf may still become prefix. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function describe(buf: Buffer): string {
  const lf = buf.indexOf(0x0a);
  const line = buf.subarray(0, Math.min(lf === -1 ? buf.length : lf, 40));
  return JSON.stringify(line.toString('latin1'));
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

function proxyError(message: string, cause?: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_ERR_PROXY_HEADER',
    `PROXY header: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

function asProxyError(err: unknown): SluiceError {
  return err instanceof SluiceError ? err : proxyError('unexpected parse failure', err);
}
