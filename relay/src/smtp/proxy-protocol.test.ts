import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { isSluiceError } from '../errors.ts';
import { waitFor } from '../testing/wait-for.ts';
import { readProxyHeader } from './proxy-protocol.ts';

// Long enough never to fire in tests that are about something else, so a rejection there
// cannot be the timeout in disguise.
const NO_TIMEOUT = { timeoutMs: 60_000 };

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A real TCP connection on loopback: `client` is the load balancer's side, `server` the relay's. */
async function connectPair(t: TestContext): Promise<{ client: Socket; server: Socket }> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as AddressInfo;
  const accepted = once(listener, 'connection') as Promise<[Socket]>;
  const client = connect(port, '127.0.0.1');
  client.setNoDelay(true);
  const [[server]] = await Promise.all([accepted, once(client, 'connect')]);
  t.after(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  return { client, server };
}

function write(socket: Socket, data: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * A connection pair on which the relay's side starts reading a PROXY header before the
 * load balancer's side sends `data`: the reading, and both sockets for further checks.
 */
async function sendHeader(
  t: TestContext,
  data: Buffer | string,
): Promise<{ reading: ReturnType<typeof readProxyHeader>; client: Socket; server: Socket }> {
  const { client, server } = await connectPair(t);
  const reading = readProxyHeader(server, NO_TIMEOUT);
  await write(client, data);
  return { reading, client, server };
}

/** Writes one byte at a time, each only after the relay side has taken the previous one off the wire. */
async function writeBytewise(client: Socket, server: Socket, data: Buffer): Promise<void> {
  const start = server.bytesRead;
  for (const [i, byte] of data.entries()) {
    await write(client, Buffer.from([byte]));
    await waitFor(`byte ${i} to arrive`, () => server.bytesRead >= start + i + 1);
  }
}

/** Collects what a consumer attached now receives, until `expected` bytes arrived or the deadline passes. */
function receive(socket: Readable, expected: number, deadlineMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`got ${JSON.stringify(Buffer.concat(chunks).toString())}, wanted ${expected} bytes`));
    }, deadlineMs);
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= expected) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve(Buffer.concat(chunks).toString('latin1'));
      }
    };
    socket.on('data', onData);
  });
}

function v2Header(options: { command: number; family: number; body: Buffer }): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = options.command;
  fixed[1] = options.family;
  fixed.writeUInt16BE(options.body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, options.body]);
}

function ports(source: number, destination: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt16BE(source, 0);
  buf.writeUInt16BE(destination, 2);
  return buf;
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

const V2_TCP4_BODY = Buffer.concat([Buffer.from([203, 0, 113, 9, 10, 1, 2, 3]), ports(51234, 25)]);
const V2_TCP6_BODY = Buffer.concat([
  Buffer.from('20010db8000000000000000000000009', 'hex'),
  Buffer.from('fd000000000000000000000000000025', 'hex'),
  ports(40000, 587),
]);

async function assertRejects(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (err: unknown) => isSluiceError(err, 'SLUICE_ERR_PROXY_HEADER'));
}

describe('readProxyHeader, v1', () => {
  it('reads a TCP4 header', async (t) => {
    const { reading } = await sendHeader(t, 'PROXY TCP4 203.0.113.9 10.1.2.3 51234 25\r\n');
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '203.0.113.9',
      remotePort: 51234,
      localAddress: '10.1.2.3',
      localPort: 25,
      version: 1,
    });
  });

  it('reads a TCP6 header', async (t) => {
    const { reading } = await sendHeader(t, 'PROXY TCP6 2001:db8::9 fd00::25 0 65535\r\n');
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '2001:db8::9',
      remotePort: 0,
      localAddress: 'fd00::25',
      localPort: 65535,
      version: 1,
    });
  });

  it('reads UNKNOWN, with or without the optional fields, as local', async (t) => {
    for (const header of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n']) {
      const { reading } = await sendHeader(t, header);
      assert.deepEqual(await reading, { kind: 'local', version: 1 });
    }
  });

  it('accepts a header of exactly 107 bytes', async (t) => {
    const header = `PROXY UNKNOWN ${'x'.repeat(91)}\r\n`;
    assert.equal(header.length, 107);
    const { reading, server } = await sendHeader(t, `${header}EHLO x\r\n`);
    assert.deepEqual(await reading, { kind: 'local', version: 1 });
    assert.equal(await receive(server, 8), 'EHLO x\r\n');
  });

  it('rejects a 108-byte line', async (t) => {
    const { reading } = await sendHeader(t, `PROXY UNKNOWN ${'x'.repeat(92)}\r\n`);
    await assertRejects(reading);
  });

  it('rejects 107 bytes without a CRLF, without waiting for more', async (t) => {
    const { reading } = await sendHeader(t, `PROXY UNKNOWN ${'x'.repeat(93)}`);
    await assertRejects(reading);
  });

  it('rejects a first line that is not a PROXY header', async (t) => {
    const { reading } = await sendHeader(t, 'EHLO x\r\n');
    await assertRejects(reading);
  });

  it('rejects malformed v1 headers', async (t) => {
    const malformed = [
      'PROXY TCP4 203.0.113.9 10.1.2.3 51234\r\n',
      'PROXY TCP4 203.0.113.9 10.1.2.3 51234 25 extra\r\n',
      'PROXY TCP4 203.0.113.9 10.1.2.3 65536 25\r\n',
      'PROXY TCP4 203.0.113.9 10.1.2.3 -1 25\r\n',
      'PROXY TCP4 203.0.113.9 10.1.2.3 0x19 25\r\n',
      'PROXY TCP4 203.0.113.256 10.1.2.3 51234 25\r\n',
      'PROXY TCP4 2001:db8::9 10.1.2.3 51234 25\r\n',
      'PROXY TCP6 203.0.113.9 fd00::25 51234 25\r\n',
      'PROXY TCP6 fe80::1%eth0 fd00::25 51234 25\r\n',
      'PROXY  TCP4 203.0.113.9 10.1.2.3 51234 25\r\n',
      'PROXY UDP4 203.0.113.9 10.1.2.3 51234 25\r\n',
      'PROXY TCP4 203.0.113.9 10.1.2.3 51234 25\n',
      'PROXY\r\n',
      'proxy TCP4 203.0.113.9 10.1.2.3 51234 25\r\n',
    ];
    for (const header of malformed) {
      const { reading } = await sendHeader(t, header);
      await assert.rejects(
        reading,
        (err: unknown) => isSluiceError(err, 'SLUICE_ERR_PROXY_HEADER'),
        JSON.stringify(header),
      );
    }
  });
});

describe('readProxyHeader, v2', () => {
  it('reads a PROXY command for TCP over IPv4', async (t) => {
    const { reading } = await sendHeader(t, v2Header({ command: 0x21, family: 0x11, body: V2_TCP4_BODY }));
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '203.0.113.9',
      remotePort: 51234,
      localAddress: '10.1.2.3',
      localPort: 25,
      version: 2,
    });
  });

  it('reads a PROXY command for TCP over IPv6, in canonical address form', async (t) => {
    const { reading } = await sendHeader(t, v2Header({ command: 0x21, family: 0x21, body: V2_TCP6_BODY }));
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '2001:db8::9',
      remotePort: 40000,
      localAddress: 'fd00::25',
      localPort: 587,
      version: 2,
    });
  });

  it('renders an IPv4-mapped IPv6 source the way Node reports socket addresses', async (t) => {
    const body = Buffer.concat([
      Buffer.from('00000000000000000000ffff0a010203', 'hex'),
      Buffer.from('00000000000000000000000000000001', 'hex'),
      ports(1, 2),
    ]);
    const { reading } = await sendHeader(t, v2Header({ command: 0x21, family: 0x21, body }));
    const info = await reading;
    assert.equal(info.kind, 'proxied');
    assert.equal(info.kind === 'proxied' && info.remoteAddress, '::ffff:10.1.2.3');
    assert.equal(info.kind === 'proxied' && info.localAddress, '::1');
  });

  it('skips TLVs after the addresses', async (t) => {
    const { client, server } = await connectPair(t);
    const body = Buffer.concat([
      V2_TCP4_BODY,
      tlv(0x01, Buffer.from('smtp')), // PP2_TYPE_ALPN
      tlv(0x05, Buffer.from('unique-id-1234')), // PP2_TYPE_UNIQUE_ID
      tlv(0x04, Buffer.alloc(3)), // PP2_TYPE_NOOP padding
    ]);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    await write(
      client,
      Buffer.concat([v2Header({ command: 0x21, family: 0x11, body }), Buffer.from('EHLO x\r\n')]),
    );
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '203.0.113.9',
      remotePort: 51234,
      localAddress: '10.1.2.3',
      localPort: 25,
      version: 2,
    });
    assert.equal(await receive(server, 8), 'EHLO x\r\n');
  });

  it('reads a LOCAL command (a health check) as local, ignoring its address block', async (t) => {
    for (const [family, body] of [
      [0x00, Buffer.alloc(0)],
      [0x11, V2_TCP4_BODY],
    ] as const) {
      const { client, server } = await connectPair(t);
      const reading = readProxyHeader(server, NO_TIMEOUT);
      await write(
        client,
        Buffer.concat([v2Header({ command: 0x20, family, body }), Buffer.from('QUIT\r\n')]),
      );
      assert.deepEqual(await reading, { kind: 'local', version: 2 });
      assert.equal(await receive(server, 6), 'QUIT\r\n');
    }
  });

  it('reads a PROXY command with family UNSPEC as local', async (t) => {
    const { reading } = await sendHeader(
      t,
      v2Header({ command: 0x21, family: 0x00, body: tlv(0x04, Buffer.alloc(2)) }),
    );
    assert.deepEqual(await reading, { kind: 'local', version: 2 });
  });

  it('rejects UDP and UNIX sources, bad version or command bytes, and address blocks that do not fit', async (t) => {
    const malformed = [
      v2Header({ command: 0x21, family: 0x12, body: V2_TCP4_BODY }), // UDP over IPv4
      v2Header({ command: 0x21, family: 0x22, body: V2_TCP6_BODY }), // UDP over IPv6
      v2Header({ command: 0x21, family: 0x31, body: Buffer.alloc(216) }), // UNIX stream
      v2Header({ command: 0x21, family: 0x41, body: V2_TCP4_BODY }), // no such family
      v2Header({ command: 0x11, family: 0x11, body: V2_TCP4_BODY }), // version 1 in a v2 header
      v2Header({ command: 0x22, family: 0x11, body: V2_TCP4_BODY }), // no such command
      v2Header({ command: 0x21, family: 0x11, body: V2_TCP4_BODY.subarray(0, 11) }),
      v2Header({ command: 0x21, family: 0x21, body: V2_TCP4_BODY }), // IPv6 family, IPv4-sized block
    ];
    for (const header of malformed) {
      const { reading } = await sendHeader(t, header);
      await assert.rejects(
        reading,
        (err: unknown) => isSluiceError(err, 'SLUICE_ERR_PROXY_HEADER'),
        header.toString('hex'),
      );
    }
  });

  it('rejects a corrupted signature', async (t) => {
    const header = v2Header({ command: 0x21, family: 0x11, body: V2_TCP4_BODY });
    header[7] = 0x71; // 'q' for 'Q'
    const { reading } = await sendHeader(t, header);
    await assertRejects(reading);
  });
});

describe('readProxyHeader, delivery', () => {
  it('reads a v1 header that arrives one byte per write', async (t) => {
    const { client, server } = await connectPair(t);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    await writeBytewise(
      client,
      server,
      Buffer.from('PROXY TCP4 203.0.113.9 10.1.2.3 51234 25\r\nEHLO x\r\n'),
    );
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '203.0.113.9',
      remotePort: 51234,
      localAddress: '10.1.2.3',
      localPort: 25,
      version: 1,
    });
    assert.equal(await receive(server, 8), 'EHLO x\r\n');
  });

  it('reads a v2 header with TLVs that arrives one byte per write', async (t) => {
    const { client, server } = await connectPair(t);
    const body = Buffer.concat([V2_TCP6_BODY, tlv(0x05, Buffer.from('abc'))]);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    const header = v2Header({ command: 0x21, family: 0x21, body });
    await writeBytewise(client, server, Buffer.concat([header, Buffer.from('EHLO x\r\n')]));
    assert.deepEqual(await reading, {
      kind: 'proxied',
      remoteAddress: '2001:db8::9',
      remotePort: 40000,
      localAddress: 'fd00::25',
      localPort: 587,
      version: 2,
    });
    assert.equal(await receive(server, 8), 'EHLO x\r\n');
  });

  it('leaves bytes that came in the same segment as the header for a consumer attached later', async (t) => {
    const { reading, server } = await sendHeader(
      t,
      'PROXY TCP4 203.0.113.9 10.1.2.3 51234 25\r\nEHLO x\r\nMAIL FROM:<a@b>\r\n',
    );
    await reading;
    // The SMTP server is handed the socket after more asynchronous work, not in the same tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await receive(server, 25), 'EHLO x\r\nMAIL FROM:<a@b>\r\n');
  });

  it('delivers bytes sent after the header to a consumer attached after the reader resolved', async (t) => {
    const { reading, client, server } = await sendHeader(
      t,
      v2Header({ command: 0x21, family: 0x11, body: V2_TCP4_BODY }),
    );
    await reading;
    const received = receive(server, 8);
    await write(client, 'EHLO x\r\n');
    assert.equal(await received, 'EHLO x\r\n');
  });

  it('delivers bytes sent after the header to a consumer attached a turn of the event loop later', async (t) => {
    const { reading, client, server } = await sendHeader(t, 'PROXY UNKNOWN\r\n');
    await reading;
    await write(client, 'EHLO x\r\n');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await receive(server, 8), 'EHLO x\r\n');
  });

  it('feeds a piped consumer (as an SMTP server would attach) the bytes after the header', async (t) => {
    const { reading, server } = await sendHeader(t, 'PROXY TCP4 203.0.113.9 10.1.2.3 51234 25\r\nEHLO x\r\n');
    await reading;
    const sink = new PassThrough();
    server.pipe(sink);
    assert.equal(await receive(sink, 8), 'EHLO x\r\n');
  });

  it('leaves no listeners of its own on the socket', async (t) => {
    const { client, server } = await connectPair(t);
    const before = ['readable', 'end', 'close', 'error'].map((event) => server.listenerCount(event));
    const reading = readProxyHeader(server, NO_TIMEOUT);
    await write(client, 'PROXY UNKNOWN\r\n');
    await reading;
    assert.deepEqual(
      ['readable', 'end', 'close', 'error'].map((event) => server.listenerCount(event)),
      before,
    );
  });

  it('rejects when the connection closes after a truncated v2 header', async (t) => {
    const { client, server } = await connectPair(t);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    const header = v2Header({ command: 0x21, family: 0x11, body: V2_TCP4_BODY });
    client.end(header.subarray(0, 20));
    await assertRejects(reading);
  });

  it('rejects when the connection closes inside the v1 line', async (t) => {
    const { client, server } = await connectPair(t);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    client.end('PROXY TCP4 203.0.113.9');
    await assertRejects(reading);
  });

  it('rejects when the connection closes before sending anything', async (t) => {
    const { client, server } = await connectPair(t);
    const reading = readProxyHeader(server, NO_TIMEOUT);
    client.end();
    await assertRejects(reading);
  });

  it('rejects a socket that is already destroyed', async (t) => {
    const { server } = await connectPair(t);
    server.destroy();
    await assertRejects(readProxyHeader(server, NO_TIMEOUT));
  });

  it('rejects when the header does not complete within the timeout', async (t) => {
    const { client, server } = await connectPair(t);
    const reading = readProxyHeader(server, { timeoutMs: 50 });
    await write(client, 'PROXY TCP4 ');
    await assertRejects(reading);
    assert.equal(server.destroyed, false, 'the caller decides what to do with the connection');
  });
});
