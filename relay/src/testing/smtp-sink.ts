// A real SMTP server for tests of outgoing delivery (an MX host or a smarthost): it records
// exactly what arrived — envelope, bytes after dot-unstuffing, TLS, AUTH user — and tests
// script its replies per recipient and at end of DATA.
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { generate } from 'selfsigned';
import {
  SMTPServer,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerEnvelope,
  type SMTPServerSession,
} from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { parseQuotedPath } from '../smtp/address-path.ts';

export interface SinkReply {
  code: number;
  /** The reply text after the code, e.g. '5.1.1 no such user'. */
  text: string;
}

export interface SinkMessage {
  sender: string;
  /** The recipients the sink accepted, in RCPT order. */
  recipients: string[];
  /** The message as received (dot-unstuffing undone); empty when keepBodies is false. */
  raw: Buffer;
  size: number;
  /** Hex SHA-256 of the received bytes, kept even when the body is not. */
  sha256: string;
  tls: boolean;
  /** MAIL FROM declared SMTPUTF8. */
  smtpUtf8: boolean;
  /** DSN parameters received (RFC 3461), when the sink offers DSN and any were given. */
  dsn?: {
    ret: string | null;
    envid: string | null;
    /** NOTIFY and ORCPT by recipient, for the recipients that had them. */
    recipients: Record<string, { notify?: string[]; orcpt?: string }>;
  };
  authUser?: string;
}

export interface SmtpSinkOptions {
  /** Address to bind; 127.0.0.2, 127.0.0.3 … stand in for several MX hosts. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Offer STARTTLS with a self-signed certificate. */
  tls?: boolean;
  /** TLS from the first byte (port 465 style). */
  implicitTls?: boolean;
  /** The certificate to offer instead of the self-signed one (say one for an MX name, from a test CA). */
  certificate?: { key: string; cert: string };
  /** Require AUTH with these credentials before MAIL. */
  auth?: { username: string; password: string };
  /** false: record size and digest only, so a test can measure the sender's memory. */
  keepBodies?: boolean;
  /** false: EHLO does not offer SMTPUTF8 (a server without internationalised addresses). */
  smtpUtf8?: boolean;
  /** true: EHLO offers DSN and the sink records RET, ENVID, NOTIFY and ORCPT. */
  dsn?: boolean;
  /** true: MAIL FROM and RCPT TO may have a quoted local part ("a b"@example.net), as RFC 5321 allows. */
  quotedLocalParts?: boolean;
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  readonly messages: SinkMessage[];
  /** SMTP sessions opened so far. */
  readonly connections: number;
  /** SMTP sessions open right now. */
  readonly openConnections: number;
  /** The most SMTP sessions that were open at once. */
  readonly maxOpenConnections: number;
  /** Messages whose end-of-DATA answer is held back (holdData). */
  readonly held: number;
  /** MAIL FROM commands accepted so far. */
  readonly transactions: number;
  /** RSET commands received so far (sessions without TLS only: read off the wire). */
  readonly resets: number;
  /** MAIL and RCPT command lines as they arrived (sessions without TLS only). */
  readonly envelopeCommands: string[];
  /** The next MAIL FROM gets no answer: the connection is closed, as by a server that timed it out. */
  hangUpOnNextMail(): void;
  /** Answers RCPT TO for this address with the reply; undefined accepts it again. */
  setRecipientReply(address: string, reply: SinkReply | undefined): void;
  /** Answers the end of DATA with the reply (a 4xx/5xx rejects the message); undefined accepts. */
  setDataReply(reply: SinkReply | undefined): void;
  /** Resolves once at least n messages arrived; rejects after timeoutMs. */
  waitForMessages(n: number, timeoutMs?: number): Promise<void>;
  /** Hangs up on every client at once, as a server restarting or timing out idle clients would. */
  dropConnections(): void;
  /** Holds the answer to every end of DATA (the sender's connection stays busy) until released. */
  holdData(): () => void;
  /** Requires these credentials from the next AUTH on (a rotated password). */
  setAuth(auth: { username: string; password: string }): void;
  close(): Promise<void>;
}

let certificate: Promise<{ key: string; cert: string }> | undefined;

/** One self-signed certificate per test process (key generation is slow). */
function testCertificate(): Promise<{ key: string; cert: string }> {
  certificate ??= generate([{ name: 'commonName', value: 'sink.test' }], {
    keySize: 2048,
    algorithm: 'sha256',
  }).then((pems) => ({ key: pems.private, cert: pems.cert }));
  return certificate;
}

/** The relay's own parsing of quoted local parts, in the sink's sessions. */
class QuotingConnection extends SMTPConnection {
  override _parseAddressCommand(
    rawName: string,
    rawCommand: Buffer | string,
  ): ReturnType<SMTPConnection['_parseAddressCommand']> {
    return parseQuotedPath(rawName, rawCommand, (name, command) => super._parseAddressCommand(name, command));
  }
}

/** What SMTPServer.connect() does, with QuotingConnection. */
function acceptQuotedLocalParts(server: SMTPServer): void {
  server.connect = (socket, socketOptions) => {
    const connection = new QuotingConnection(server, socket, socketOptions ?? undefined);
    server.connections.add(connection);
    connection.on('error', (err: Error) => server.emit('error', err));
    connection.on('connect', (data: unknown) => server.emit('connect', data));
    connection.init();
  };
}

function replyError(reply: SinkReply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const sink = new Sink(options);
  await sink.listen(
    options.tls || options.implicitTls ? (options.certificate ?? (await testCertificate())) : undefined,
  );
  return sink;
}

class Sink implements SmtpSink {
  readonly host: string;
  #port = 0;
  readonly messages: SinkMessage[] = [];
  connections = 0;
  transactions = 0;
  resets = 0;
  readonly envelopeCommands: string[] = [];
  #hangUp = false;
  readonly #open = new Set<string>();
  #maxOpen = 0;
  #held = 0;
  #gate: Promise<void> | undefined;
  readonly #options: SmtpSinkOptions;
  #auth: { username: string; password: string } | undefined;
  readonly #recipientReplies = new Map<string, SinkReply>();
  #dataReply: SinkReply | undefined;
  readonly #waiters = new Set<() => void>();
  readonly #sockets = new Set<Socket>();
  #server: SMTPServer | undefined;

  constructor(options: SmtpSinkOptions) {
    this.#options = options;
    this.#auth = options.auth;
    this.host = options.host ?? '127.0.0.1';
  }

  get port(): number {
    return this.#port;
  }

  get maxOpenConnections(): number {
    return this.#maxOpen;
  }

  get held(): number {
    return this.#held;
  }

  holdData(): () => void {
    let release: () => void = () => undefined;
    this.#gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    return () => {
      this.#gate = undefined;
      release();
    };
  }

  get openConnections(): number {
    return this.#open.size;
  }

  async listen(pems: { key: string; cert: string } | undefined): Promise<void> {
    const { auth } = this.#options;
    const disabledCommands: string[] = [];
    if (!this.#options.tls) disabledCommands.push('STARTTLS');
    if (!auth) disabledCommands.push('AUTH');
    const server = new SMTPServer({
      ...(pems ?? {}),
      name: 'sink.test',
      secure: this.#options.implicitTls === true,
      disabledCommands,
      hideSMTPUTF8: this.#options.smtpUtf8 === false,
      hideDSN: this.#options.dsn !== true,
      authOptional: auth === undefined,
      allowInsecureAuth: true,
      disableReverseLookup: true,
      logger: false,
      onConnect: (session, callback) => {
        this.connections++;
        this.#open.add(session.id);
        this.#maxOpen = Math.max(this.#maxOpen, this.#open.size);
        callback();
      },
      onClose: (session) => {
        this.#open.delete(session.id);
      },
      onAuth: (login: SMTPServerAuthentication, _session, callback) => {
        const now = this.#auth;
        if (now && login.username === now.username && login.password === now.password) {
          callback(null, { user: login.username });
        } else {
          callback(
            Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }),
          );
        }
      },
      onMailFrom: (_address, session, callback) => {
        if (this.#hangUp) {
          this.#hangUp = false;
          for (const socket of this.#sockets) {
            if (socket.remotePort === session.remotePort) socket.destroy();
          }
          return;
        }
        this.transactions++;
        callback();
      },
      onRcptTo: (address, _session, callback) => {
        const reply = this.#recipientReplies.get(address.address.toLowerCase());
        callback(reply && reply.code >= 400 ? replyError(reply) : undefined);
      },
      onData: (stream, session, callback) => this.#receive(stream, session, callback),
    });
    server.on('error', () => {
      // a client that vanishes mid-session is what some tests do on purpose
    });
    server.server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      if (!this.#options.tls && !this.#options.implicitTls) {
        // commands in the clear: count RSETs as they arrive (a line of their own)
        let carry = '';
        socket.on('data', (chunk: Buffer) => {
          const text = carry + chunk.toString('latin1');
          const lines = text.split('\r\n');
          carry = lines.pop() ?? '';
          for (const line of lines) {
            if (line.toUpperCase() === 'RSET') this.resets++;
            if (/^(MAIL FROM|RCPT TO):/i.test(line)) this.envelopeCommands.push(line);
          }
        });
      }
      socket.once('close', () => this.#sockets.delete(socket));
    });
    if (this.#options.quotedLocalParts) acceptQuotedLocalParts(server);
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(this.#options.port ?? 0, this.host, () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    const address = server.server.address();
    if (address === null || typeof address === 'string') throw new Error('sink has no TCP address');
    this.#port = address.port;
  }

  #receive(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void {
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let size = 0;
    const keep = this.#options.keepBodies !== false;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      hash.update(chunk);
      if (keep) chunks.push(chunk);
    });
    stream.once('end', () => {
      const gate = this.#gate;
      if (gate === undefined) return this.#answerData(session, chunks, size, hash, keep, callback);
      this.#held++;
      void gate.then(() => {
        this.#held--;
        this.#answerData(session, chunks, size, hash, keep, callback);
      });
    });
  }

  #answerData(
    session: SMTPServerSession,
    chunks: Buffer[],
    size: number,
    hash: ReturnType<typeof createHash>,
    keep: boolean,
    callback: (err?: Error | null, message?: string) => void,
  ): void {
    const reply = this.#dataReply;
    if (reply && reply.code >= 400) {
      callback(replyError(reply));
      return;
    }
    const mailFrom = session.envelope.mailFrom;
    const message: SinkMessage = {
      sender: mailFrom ? mailFrom.address : '',
      recipients: session.envelope.rcptTo.map((r) => r.address),
      raw: keep ? Buffer.concat(chunks) : Buffer.alloc(0),
      size,
      sha256: hash.digest('hex'),
      tls: session.secure,
      smtpUtf8: session.envelope.smtpUtf8 === true,
    };
    const dsn = sinkDsn(session.envelope);
    if (dsn) message.dsn = dsn;
    if (typeof session.user === 'string') message.authUser = session.user;
    this.messages.push(message);
    for (const wake of this.#waiters) wake();
    callback(null, reply?.text ?? 'Ok: queued');
  }

  setRecipientReply(address: string, reply: SinkReply | undefined): void {
    if (reply === undefined) this.#recipientReplies.delete(address.toLowerCase());
    else this.#recipientReplies.set(address.toLowerCase(), reply);
  }

  setDataReply(reply: SinkReply | undefined): void {
    this.#dataReply = reply;
  }

  waitForMessages(n: number, timeoutMs = 5000): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`sink ${this.host}:${this.port}: ${this.messages.length} of ${n} messages arrived`));
      }, timeoutMs);
      const check = (): void => {
        if (this.messages.length < n) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  hangUpOnNextMail(): void {
    this.#hangUp = true;
  }

  setAuth(auth: { username: string; password: string }): void {
    this.#auth = auth;
  }

  dropConnections(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return Promise.resolve();
    this.#server = undefined;
    return new Promise((resolve) => {
      server.close(() => resolve());
      // smtp-server would wait for clients to leave; a test sink just hangs up on them.
      this.dropConnections();
    });
  }
}

/** The DSN parameters of a transaction, or undefined when none was given. */
function sinkDsn(envelope: SMTPServerEnvelope): SinkMessage['dsn'] {
  const recipients: Record<string, { notify?: string[]; orcpt?: string }> = {};
  for (const r of envelope.rcptTo) {
    if (!r.dsn) continue;
    recipients[r.address] = {
      ...(r.dsn.notify ? { notify: r.dsn.notify } : {}),
      ...(r.dsn.orcpt !== undefined ? { orcpt: r.dsn.orcpt } : {}),
    };
  }
  const ret = envelope.dsn?.ret ?? null;
  const envid = envelope.dsn?.envid ?? null;
  if (ret === null && envid === null && Object.keys(recipients).length === 0) return undefined;
  return { ret, envid, recipients };
}
