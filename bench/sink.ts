// The benchmark's sink: a minimal SMTP server on loopback that answers 250 to everything,
// finds the end of DATA without buffering the message, and records each message's
// Message-ID, so the harness can check that every message a relay accepted arrived.
// Run as a child process (`node bench/sink.ts`): it reports its port over IPC and
// answers { type: 'stats' } and { type: 'reset' } messages.
import net from 'node:net';

export interface SinkStats {
  messages: number;
  recipients: number;
  bytes: number;
  /** Message-IDs seen (without brackets); a repeated id is counted in duplicates. */
  ids: string[];
  duplicates: number;
  connections: number;
}

const END = Buffer.from('\r\n.\r\n');
const HEADER_LIMIT = 64 * 1024;

class SinkState {
  messages = 0;
  recipients = 0;
  bytes = 0;
  duplicates = 0;
  connections = 0;
  ids = new Set<string>();

  record(messageId: string | undefined, recipients: number, bytes: number): void {
    this.messages++;
    this.recipients += recipients;
    this.bytes += bytes;
    if (messageId === undefined) return;
    if (this.ids.has(messageId)) this.duplicates++;
    else this.ids.add(messageId);
  }

  reset(): void {
    this.messages = 0;
    this.recipients = 0;
    this.bytes = 0;
    this.duplicates = 0;
    this.connections = 0;
    this.ids = new Set();
  }

  stats(): SinkStats {
    return {
      messages: this.messages,
      recipients: this.recipients,
      bytes: this.bytes,
      ids: [...this.ids],
      duplicates: this.duplicates,
      connections: this.connections,
    };
  }
}

function messageIdOf(header: string): string | undefined {
  const match = /^message-id:[ \t]*<([^>\r\n]*)>/im.exec(header);
  return match?.[1];
}

/** One connection: command mode (line by line, replies batched per read) or data mode. */
function serve(socket: net.Socket, state: SinkState): void {
  socket.setNoDelay(true);
  state.connections++;
  let data = false;
  let pending = Buffer.alloc(0); // command bytes not yet ending in CRLF
  let recipients = 0;
  let header = '';
  let headerDone = false;
  let bytes = 0;
  // last four bytes of the previous chunk, to find an end marker split across reads;
  // DATA starts as if after a CRLF, so an empty body ".\r\n" ends it too
  let tail = Buffer.from('\r\n');

  const endMessage = () => {
    state.record(messageIdOf(header), recipients, bytes);
    data = false;
    recipients = 0;
    header = '';
    headerDone = false;
    bytes = 0;
  };

  const onCommands = (chunk: Buffer, out: string[]): Buffer | undefined => {
    let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      const eol = buf.indexOf('\r\n');
      if (eol < 0) {
        pending = Buffer.from(buf);
        return undefined;
      }
      const line = buf.toString('latin1', 0, eol);
      buf = buf.subarray(eol + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') {
        out.push(
          '250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1073741824\r\n250 ENHANCEDSTATUSCODES\r\n',
        );
      } else if (verb === 'RCPT') {
        recipients++;
        out.push('250 2.1.5 Ok\r\n');
      } else if (verb === 'DATA') {
        out.push('354 End data with <CR><LF>.<CR><LF>\r\n');
        data = true;
        tail = Buffer.from('\r\n');
        pending = Buffer.alloc(0);
        return buf;
      } else if (verb === 'QUIT') {
        out.push('221 2.0.0 Bye\r\n');
        socket.end(out.join(''));
        out.length = 0;
        pending = Buffer.alloc(0);
        return undefined;
      } else {
        out.push('250 2.0.0 Ok\r\n');
      }
    }
  };

  /** Consumes body bytes; returns what follows the end marker, or undefined. */
  const onData = (chunk: Buffer, out: string[]): Buffer | undefined => {
    if (!headerDone) {
      header += chunk.toString('latin1', 0, Math.min(chunk.length, HEADER_LIMIT));
      const end = header.indexOf('\r\n\r\n');
      if (end >= 0 || header.length >= HEADER_LIMIT) {
        headerDone = true;
        header = end >= 0 ? header.slice(0, end + 2) : header;
      }
    }
    const joined = Buffer.concat([tail, chunk.subarray(0, Math.min(chunk.length, 5))]);
    let at = joined.indexOf(END);
    let rest: Buffer | undefined;
    if (at >= 0) {
      const consumed = at + END.length - tail.length;
      rest = chunk.subarray(consumed);
      bytes += Math.max(0, consumed);
    } else {
      at = chunk.indexOf(END);
      if (at >= 0) {
        rest = chunk.subarray(at + END.length);
        bytes += at + END.length;
      }
    }
    if (rest === undefined) {
      bytes += chunk.length;
      tail =
        chunk.length >= 4
          ? Buffer.from(chunk.subarray(chunk.length - 4))
          : Buffer.concat([tail, chunk]).subarray(-4);
      return undefined;
    }
    out.push('250 2.0.0 Ok: queued\r\n');
    endMessage();
    return rest;
  };

  socket.on('data', (chunk: Buffer) => {
    const out: string[] = [];
    let next: Buffer | undefined = chunk;
    while (next !== undefined && next.length > 0) {
      next = data ? onData(next, out) : onCommands(next, out);
    }
    if (out.length > 0 && socket.writable) socket.write(out.join(''));
  });
  socket.on('error', () => {});
  socket.write('220 sink.bench ESMTP\r\n');
}

/** Starts a sink on 127.0.0.1 at a free port. */
export async function startSink(): Promise<{ port: number; state: SinkState; close: () => Promise<void> }> {
  const state = new SinkState();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serve(socket, state);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    state,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

if (import.meta.main && process.send) {
  const sink = await startSink();
  process.send({ type: 'listening', port: sink.port });
  process.on('message', (message: { type: string; id: number }) => {
    if (message.type === 'reset') sink.state.reset();
    process.send?.({ type: message.type, id: message.id, stats: sink.state.stats() });
  });
  process.on('disconnect', () => process.exit(0));
}
