import type { X509Certificate } from 'node:crypto';
import type { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type {
  SMTPConnectionEnvelope,
  SMTPConnectionOptions,
  SMTPEnvelope,
} from 'nodemailer/lib/smtp-connection';
import type { Poolable } from './connection-pool.ts';
import { asSmtpError, isTlsError, type Sent, TlsSetupError } from './delivery-results.ts';
import { envelopeDsn, StuffingSMTPConnection } from './dot-stuffing.ts';
import type { DeliveryJob } from './types.ts';

const QUIT_TIMEOUT_MS = 2_000;

/** One SMTP client connection (nodemailer's SMTPConnection, with the DATA encoder of dot-stuffing.ts) behind promises. */
export class OutboundSession implements Poolable {
  /** The MX or smarthost name this connection went to. */
  readonly remoteHost: string;
  /** The addresses of the connection (this relay's egress address, the server's), once connected. */
  localAddress: string | undefined;
  remoteAddress: string | undefined;
  readonly #conn: StuffingSMTPConnection;
  #failed = false;
  /** True while the session is between transactions in a known state (QUIT or reuse is fine). */
  #clean = true;
  /** The last transaction was refused part-way: the server may still hold its MAIL FROM. */
  #refused = false;
  /** Called once when the session is closed (a shared connection slot is given back). */
  #onClose: (() => void) | undefined;

  private constructor(remoteHost: string, conn: StuffingSMTPConnection) {
    this.remoteHost = remoteHost;
    this.#conn = conn;
    // SMTPConnection emits 'error' besides failing the call in flight; without a listener
    // an error on an idle pooled connection would crash the process.
    conn.on('error', () => {
      this.#failed = true;
    });
    conn.on('end', () => {
      this.#failed = true;
    });
  }

  static async open(
    remoteHost: string,
    options: SMTPConnectionOptions,
    auth?: { user: string; pass: string },
  ): Promise<OutboundSession> {
    const session = new OutboundSession(remoteHost, new StuffingSMTPConnection(options));
    try {
      await session.#run((done) => session.#conn.connect((err) => done(err)));
      const socket = (
        session.#conn as unknown as { _socket?: { localAddress?: string; remoteAddress?: string } }
      )._socket;
      session.localAddress = socket?.localAddress;
      session.remoteAddress = socket?.remoteAddress;
      if (auth !== undefined) await session.#run((done) => session.#conn.login(auth, (err) => done(err)));
    } catch (err: unknown) {
      const tls = session.#conn.upgrading === true || isTlsError(err);
      session.#clean = false;
      session.close();
      throw tls ? new TlsSetupError(err) : err;
    }
    return session;
  }

  get usable(): boolean {
    return !this.#failed && !this.#conn.destroyed;
  }

  get secure(): boolean {
    return this.#conn.secure;
  }

  /**
   * Whether the server's certificate verified (chain and name) on an encrypted session,
   * with the reason when not; undefined in clear text. Read from the TLS socket, which
   * SMTPConnection keeps as _socket (it exposes no accessor).
   */
  get tlsVerification(): { authorized: boolean; error?: string } | undefined {
    const socket = (this.#conn as unknown as { _socket?: unknown })._socket;
    if (!this.#conn.secure || !(socket instanceof TLSSocket)) return undefined;
    return socket.authorized
      ? { authorized: true }
      : { authorized: false, error: String(socket.authorizationError ?? 'certificate not verified') };
  }

  /** The server's certificate and the chain above it, as far as the server sent it. */
  get peerCertificates(): { peer: X509Certificate; chain: X509Certificate[] } | undefined {
    const socket = (this.#conn as unknown as { _socket?: unknown })._socket;
    if (!this.#conn.secure || !(socket instanceof TLSSocket)) return undefined;
    const peer = socket.getPeerX509Certificate();
    if (!peer) return undefined;
    const chain: X509Certificate[] = [];
    // a self-signed certificate is its own issuer: that ends the chain
    for (let link = peer.issuerCertificate; link && chain.length < 10; link = link.issuerCertificate) {
      if (link.fingerprint256 === chain.at(-1)?.fingerprint256 || link.fingerprint256 === peer.fingerprint256)
        break;
      chain.push(link);
    }
    return { peer, chain };
  }

  /** Whether the server's EHLO reply offered an extension (e.g. SMTPUTF8). */
  offers(extension: string): boolean {
    return this.#conn.offers(extension);
  }

  get clean(): boolean {
    return this.#clean && this.usable;
  }

  /**
   * One transaction; never rejects. The body, a stream or all of it in one buffer, is
   * dot-stuffed on its way (dot-stuffing.ts).
   */
  async send(job: DeliveryJob, body: Readable | Buffer): Promise<Sent> {
    // nodemailer keeps its per-recipient bookkeeping on the envelope object it is given
    const envelope: SMTPEnvelope & Partial<Pick<SMTPConnectionEnvelope, 'accepted' | 'rejectedErrors'>> = {
      from: job.sender,
      to: [...job.recipients],
      size: job.size + Buffer.byteLength(job.headerPrefix ?? '', 'latin1'),
      use8BitMime: true,
      // RET and ENVID go on MAIL FROM where the server offers DSN; NOTIFY and ORCPT per RCPT
      ...envelopeDsn(job.dsn),
    };
    const sent: Sent = { accepted: [], rejected: [] };
    this.#conn.crlfOnly = job.crlfOnly === true;
    this.#conn.smtpUtf8 = job.smtpUtf8 !== undefined;
    this.#conn.dsn = job.dsn;
    try {
      await this.#run((done) =>
        this.#conn.send(envelope, body, (err, info) => {
          if (err === null) sent.response = info.response;
          done(err);
        }),
      );
    } catch (err: unknown) {
      sent.error = asSmtpError(err);
      if (!Buffer.isBuffer(body)) body.destroy();
    }
    sent.accepted = envelope.accepted ?? [];
    for (const rejected of envelope.rejectedErrors ?? []) {
      if (rejected.recipient !== undefined && rejected.response !== undefined) {
        sent.rejected.push({ recipient: rejected.recipient, response: rejected.response });
      }
    }
    // After a reply-level refusal the session is still in step; after anything else it is not.
    const refused =
      sent.error?.response !== undefined && ['EENVELOPE', 'EMESSAGE'].includes(sent.error.code ?? '');
    this.#clean = sent.error === undefined || refused;
    this.#refused = refused;
    return sent;
  }

  /**
   * Whether the next transaction must start with RSET: after a refused one. After one the
   * server took, a new MAIL FROM is what RFC 5321 expects (Postfix's client does the same).
   */
  get needsReset(): boolean {
    return this.#refused;
  }

  /** RSET before reusing a pooled connection; false when it no longer answers. */
  async reset(): Promise<boolean> {
    try {
      await this.#run((done) => this.#conn.reset((err) => done(err)));
      this.#refused = false;
      return true;
    } catch {
      this.#clean = false;
      return false;
    }
  }

  /** Runs fn once when the session is closed. */
  onClose(fn: () => void): void {
    this.#onClose = fn;
  }

  close(): void {
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
    if (!this.clean) {
      this.#conn.close();
      return;
    }
    this.#clean = false;
    this.#conn.quit();
    setTimeout(() => this.#conn.close(), QUIT_TIMEOUT_MS).unref();
  }

  /** Runs one command sequence, failing it too when the connection errors or ends meanwhile. */
  #run(start: (done: (err?: Error | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#failed) {
        reject(new Error(`connection to ${this.remoteHost} is closed`));
        return;
      }
      let settled = false;
      const finish = (err?: Error | null): void => {
        if (settled) return;
        settled = true;
        this.#conn.off('error', finish);
        this.#conn.off('end', onEnd);
        if (err) reject(err);
        else resolve();
      };
      const onEnd = (): void => finish(new Error(`connection to ${this.remoteHost} closed`));
      this.#conn.on('error', finish);
      this.#conn.on('end', onEnd);
      start(finish);
    });
  }
}

/** A failed TLS handshake (certificate, protocol), at STARTTLS or at connect. */
