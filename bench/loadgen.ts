// The benchmark's SMTP load generator: C concurrent connections, each EHLO, optional
// STARTTLS, AUTH PLAIN, then M messages of R recipients and S bytes. Only node:net and
// node:tls: Nagle is off and each step is one write (MAIL/RCPT…/DATA together when the
// server advertises PIPELINING, headers + body + final dot together), so the client never
// waits on a delayed ACK. Every message carries a unique Message-ID; the result lists the
// ids that got 250 so the harness can check them against what reached the sink.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import tls from 'node:tls';

export interface SmtpReply {
  code: number;
  lines: string[];
}

export interface LoadOptions {
  port: number;
  /** Several instances of one system (as pods behind a Service): connection w goes to ports[w % n]. */
  ports?: number[];
  host?: string;
  /** Concurrent connections (workers). */
  connections: number;
  messagesPerConnection: number;
  /** Connections each worker opens one after the other (default 1). */
  connectionsPerWorker?: number;
  recipients: number;
  /** Size of each message on the wire, headers included. */
  messageBytes: number;
  /** One text/plain part instead of text with a PDF attachment (messageTemplate). */
  plainText?: boolean;
  /** Send MAIL/RCPT/DATA in one write when the server advertises PIPELINING. */
  pipelining: boolean;
  starttls: boolean;
  auth?: { user: string; password: string };
  sender?: string;
  recipientDomain?: string;
  /** Source address of a connection (e.g. 127.1.0.7), so a server sees many clients. */
  localAddress?: (worker: number, connection: number) => string | undefined;
  /** Distinguishes the Message-IDs of one run from another's. */
  runId: string;
  /** A connection that receives nothing for this long fails (default 120 s). */
  idleTimeoutMs?: number;
}

export interface LoadResult {
  /** Message-IDs (without brackets) of the messages answered 250 after the final dot. */
  accepted: string[];
  /** Messages refused at MAIL, RCPT, DATA or after the dot. */
  refused: number;
  /** The first few distinct failure texts (refusals and connection errors). */
  errors: string[];
  /** MAIL FROM written → 250 after the final dot, per accepted message, in ms. */
  latenciesMs: number[];
  /** The same in two parts: MAIL FROM written → 354 (the envelope's commands), and 354 →
   * 250 (the message sent, received, checked and stored). */
  envelopeMs: number[];
  dataMs: number[];
  /** How late the load generator's own event loop ran during the load (p50 and p99, in
   * ms): a client's own wait to run, which is part of every latency it measures. */
  ownLoopDelayMs: { p50: number; p99: number };
  /** The load generator's own CPU (user + system) per accepted message, in ms. */
  ownCpuMsPerMessage: number;
  /** connect() → 220 greeting, per connection, in ms. */
  greetingMs: number[];
  elapsedSeconds: number;
  msgsPerSecond: number;
  /** Whether every connection could pipeline (the server advertised it and it was asked for). */
  pipelined: boolean;
}

export class SmtpError extends Error {
  readonly reply: SmtpReply | undefined;
  constructor(message: string, reply?: SmtpReply) {
    super(reply ? `${message}: ${reply.lines.join(' | ')}` : message);
    this.reply = reply;
  }
}

/** One SMTP connection: a FIFO of reply waiters fed by a multi-line reply parser. */
export class SmtpConnection {
  #socket: net.Socket;
  #partial = '';
  #lines: string[] = [];
  #ready: SmtpReply[] = [];
  #waiters: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void }> = [];
  #failure: Error | undefined;
  readonly #onData = (chunk: Buffer) => this.#parse(chunk);
  readonly #onError = (err: Error) => this.#fail(err);
  readonly #onClose = () => this.#fail(new Error('connection closed by server'));
  readonly #onTimeout = () => {
    this.#fail(new Error('idle timeout'));
    this.#socket.destroy();
  };
  capabilities = new Map<string, string>();

  private constructor(socket: net.Socket, idleTimeoutMs: number) {
    this.#socket = socket;
    this.#attach(idleTimeoutMs);
  }

  static connect(
    port: number,
    host: string,
    localAddress: string | undefined,
    idleTimeoutMs: number,
  ): Promise<SmtpConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
      socket.setNoDelay(true);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new SmtpConnection(socket, idleTimeoutMs));
      });
    });
  }

  #attach(idleTimeoutMs: number): void {
    this.#socket.on('data', this.#onData);
    this.#socket.on('error', this.#onError);
    this.#socket.on('close', this.#onClose);
    this.#socket.setTimeout(idleTimeoutMs, this.#onTimeout);
  }

  #detach(): void {
    this.#socket.off('data', this.#onData);
    this.#socket.off('error', this.#onError);
    this.#socket.off('close', this.#onClose);
    this.#socket.setTimeout(0);
  }

  #parse(chunk: Buffer): void {
    const text = this.#partial + chunk.toString('latin1');
    let start = 0;
    for (;;) {
      const end = text.indexOf('\r\n', start);
      if (end < 0) break;
      const line = text.slice(start, end);
      start = end + 2;
      this.#lines.push(line);
      // "250-…" continues a reply, "250 …" or a bare "250" ends it (RFC 5321 §4.2.1)
      if (line.length < 4 || line[3] !== '-') {
        const reply = { code: Number.parseInt(line.slice(0, 3), 10) || 0, lines: this.#lines };
        this.#lines = [];
        const waiter = this.#waiters.shift();
        if (waiter) waiter.resolve(reply);
        else this.#ready.push(reply);
      }
    }
    this.#partial = text.slice(start);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(err);
  }

  /** The next reply, in the order the server sent them. */
  reply(): Promise<SmtpReply> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Writes all parts as one batch (one writev for the kernel). */
  write(...parts: Array<string | Buffer>): void {
    if (parts.length === 1) {
      this.#socket.write(parts[0] as string | Buffer);
      return;
    }
    this.#socket.cork();
    for (const part of parts) this.#socket.write(part);
    this.#socket.uncork();
  }

  async command(line: string, expect: number): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    const reply = await this.reply();
    if (reply.code !== expect) throw new SmtpError(`${line.split(' ')[0]} refused`, reply);
    return reply;
  }

  async ehlo(name: string): Promise<void> {
    const reply = await this.command(`EHLO ${name}`, 250);
    this.capabilities = new Map();
    for (const line of reply.lines.slice(1)) {
      const [keyword = '', ...rest] = line.slice(4).split(' ');
      this.capabilities.set(keyword.toUpperCase(), rest.join(' '));
    }
  }

  async starttls(): Promise<void> {
    await this.command('STARTTLS', 220);
    this.#detach();
    const plain = this.#socket;
    this.#socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false }, () => {
        secure.off('error', reject);
        resolve(secure);
      });
      secure.once('error', reject);
    });
    this.#socket.setNoDelay(true);
    this.#attach(plain.timeout ?? 120_000);
  }

  close(): void {
    this.#detach();
    this.#socket.on('error', () => {});
    this.#socket.end('QUIT\r\n');
  }

  destroy(): void {
    this.#detach();
    this.#socket.destroy();
  }
}

/** A message template: per-message headers (with their Message-ID) and one shared body. */
export interface MessageTemplate {
  head(messageId: string): string;
  body: Buffer;
}

/**
 * A multipart/mixed message of about `bytes` bytes: a short text part and a base64
 * PDF attachment (an allowed type), so every attachment check parses real MIME parts.
 */
export function messageTemplate(
  bytes: number,
  sender: string,
  recipients: string[],
  plainText = false,
): MessageTemplate {
  if (plainText) return plainTemplate(bytes, sender, recipients);
  const boundary = 'bench-boundary-7f3a';
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const to = recipients.join(', ');
  const head = (messageId: string) =>
    `From: Bench <${sender}>\r\nTo: ${to}\r\nSubject: benchmark message\r\nDate: ${date}\r\n` +
    `Message-ID: <${messageId}>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n`;
  const prologue =
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n` +
    'Hello,\r\n\r\nthe report is attached.\r\n\r\n' +
    `--${boundary}\r\nContent-Type: application/pdf; name="report.pdf"\r\n` +
    'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="report.pdf"\r\n\r\n';
  const epilogue = `--${boundary}--\r\n`;
  const fixed = head('x'.repeat(60)).length + prologue.length + epilogue.length;
  const lineCount = Math.max(1, Math.ceil((bytes - fixed) / 78));
  // base64 of random bytes, 76 characters + CRLF a line; lines never start with a dot
  const raw = randomBytes(Math.ceil((lineCount * 76 * 3) / 4))
    .toString('base64')
    .slice(0, lineCount * 76);
  const lines: string[] = new Array(lineCount);
  for (let i = 0; i < lineCount; i++) lines[i] = raw.slice(i * 76, i * 76 + 76);
  const body = Buffer.from(`${prologue}${lines.join('\r\n')}\r\n${epilogue}`, 'latin1');
  return { head, body };
}

/** A text/plain message of about `bytes` bytes, lines of prose: the attachment check's plain text path. */
function plainTemplate(bytes: number, sender: string, recipients: string[]): MessageTemplate {
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const head = (messageId: string) =>
    `From: Bench <${sender}>\r\nTo: ${recipients.join(', ')}\r\nSubject: benchmark message\r\n` +
    `Date: ${date}\r\nMessage-ID: <${messageId}>\r\nMIME-Version: 1.0\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n';
  const line = 'The report for this week is below; nothing in it needs an answer today.\r\n';
  const fixed = head('x'.repeat(60)).length;
  const body = Buffer.from(line.repeat(Math.max(1, Math.ceil((bytes - fixed) / line.length))), 'latin1');
  return { head, body };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0);

/**
 * The warm-up every system gets before a measured run, the same for all: 200 small
 * messages over 20 connections. A long-running relay has its code compiled by the JIT,
 * its worker processes started and its downstream connections open; ten messages left
 * Sluice's first measured second partly unoptimised (about 10 % fewer msgs/s and most
 * of the p99 tail in the first hundred messages).
 */
export const WARM_UP = { connections: 20, messagesPerConnection: 10, messageBytes: 10_000 } as const;

/** Sends the WARM_UP load (3 recipients, pipelining, no TLS). */
export function warmUp(options: Pick<LoadOptions, 'port' | 'ports' | 'auth' | 'runId'>): Promise<LoadResult> {
  return runLoad({ ...options, ...WARM_UP, recipients: 3, pipelining: true, starttls: false });
}

/** p50/p90/p99 of a list of values. */
export function percentiles(values: number[]): { p50: number; p90: number; p99: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99) };
}

/** Runs the load and resolves when every worker has finished (or failed). */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const host = options.host ?? '127.0.0.1';
  const sender = options.sender ?? 'alice@bench.test';
  const domain = options.recipientDomain ?? 'sink.bench';
  const recipients = Array.from({ length: options.recipients }, (_, i) => `rcpt${i + 1}@${domain}`);
  const template = messageTemplate(options.messageBytes, sender, recipients, options.plainText === true);
  const envelope = `MAIL FROM:<${sender}>\r\n${recipients.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`;
  const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
  const accepted: string[] = [];
  const latenciesMs: number[] = [];
  const envelopeMs: number[] = [];
  const dataMs: number[] = [];
  const greetingMs: number[] = [];
  const errors = new Set<string>();
  let refused = 0;
  let pipelined = true;
  const note = (err: unknown) => {
    if (errors.size < 10) errors.add(err instanceof Error ? err.message : String(err));
  };

  const sendOne = async (c: SmtpConnection, pipeline: boolean, messageId: string): Promise<void> => {
    const started = performance.now();
    let dataReply: SmtpReply;
    if (pipeline) {
      c.write(envelope);
      const replies: SmtpReply[] = [];
      for (let i = 0; i < recipients.length + 2; i++) replies.push(await c.reply());
      dataReply = replies[replies.length - 1] as SmtpReply;
      const bad = replies.slice(0, -1).find((r) => r.code !== 250);
      if (bad && dataReply.code === 354) note(new SmtpError('envelope partly refused', bad));
      if (dataReply.code !== 354) {
        refused++;
        note(new SmtpError('transaction refused', bad ?? dataReply));
        await c.command('RSET', 250);
        return;
      }
    } else {
      await c.command(`MAIL FROM:<${sender}>`, 250);
      for (const r of recipients) await c.command(`RCPT TO:<${r}>`, 250);
      dataReply = await c.command('DATA', 354);
    }
    const envelopeDone = performance.now();
    c.write(template.head(messageId), template.body, '.\r\n');
    const final = await c.reply();
    if (final.code === 250) {
      const now = performance.now();
      latenciesMs.push(now - started);
      envelopeMs.push(envelopeDone - started);
      dataMs.push(now - envelopeDone);
      accepted.push(messageId);
    } else {
      refused++;
      note(new SmtpError('message refused', final));
    }
  };

  const runConnection = async (worker: number, index: number): Promise<void> => {
    const opened = performance.now();
    const ports = options.ports ?? [options.port];
    const c = await SmtpConnection.connect(
      ports[worker % ports.length] ?? options.port,
      host,
      options.localAddress?.(worker, index),
      idleTimeoutMs,
    );
    try {
      const greeting = await c.reply();
      if (greeting.code !== 220) throw new SmtpError('greeting', greeting);
      greetingMs.push(performance.now() - opened);
      await c.ehlo('loadgen.bench');
      if (options.starttls) {
        if (!c.capabilities.has('STARTTLS')) throw new Error('server does not offer STARTTLS');
        await c.starttls();
        await c.ehlo('loadgen.bench');
      }
      if (options.auth) {
        const token = Buffer.from(`\0${options.auth.user}\0${options.auth.password}`).toString('base64');
        await c.command(`AUTH PLAIN ${token}`, 235);
      }
      const pipeline = options.pipelining && c.capabilities.has('PIPELINING');
      if (options.pipelining && !pipeline) pipelined = false;
      for (let m = 0; m < options.messagesPerConnection; m++) {
        await sendOne(c, pipeline, `${options.runId}.${worker}.${index}.${m}@loadgen.bench`);
      }
      c.close();
    } catch (err: unknown) {
      note(err);
      c.destroy();
    }
  };

  // the histogram holds the whole interval between samples: late = interval - resolution
  const loopResolutionMs = 5;
  const loopDelay = monitorEventLoopDelay({ resolution: loopResolutionMs });
  loopDelay.enable();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.connections }, async (_, worker) => {
      for (let k = 0; k < (options.connectionsPerWorker ?? 1); k++) {
        await runConnection(worker, k).catch(note);
      }
    }),
  );
  const elapsedSeconds = (performance.now() - started) / 1000;
  loopDelay.disable();
  const cpu = process.cpuUsage(cpuBefore);
  return {
    accepted,
    refused,
    errors: [...errors],
    latenciesMs,
    envelopeMs,
    dataMs,
    ownLoopDelayMs: {
      p50: Math.max(0, loopDelay.percentile(50) / 1e6 - loopResolutionMs),
      p99: Math.max(0, loopDelay.percentile(99) / 1e6 - loopResolutionMs),
    },
    ownCpuMsPerMessage: (cpu.user + cpu.system) / 1000 / Math.max(1, accepted.length),
    greetingMs,
    elapsedSeconds,
    msgsPerSecond: accepted.length / elapsedSeconds,
    pipelined: options.pipelining && pipelined,
  };
}
