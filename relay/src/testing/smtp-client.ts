// A raw SMTP client for tests: sends exactly the bytes a test gives it and returns
// each reply as the server sent it, so tests can assert codes, enhanced codes and text
// (and send the malformed input that a well-behaved client library never would).
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  /** The last line's text after the code, e.g. "2.0.0 Ok: queued as X". */
  text: string;
}

export class RawSmtpClient {
  #socket: net.Socket;
  #buffer = '';
  #replies: Reply[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  #pending: string[] = [];
  #reads = 0;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#attach(socket);
  }

  /** localAddress (e.g. 127.0.0.2) makes the client appear from another loopback address. */
  static connect(
    port: number,
    options: { tls?: boolean; localAddress?: string } = {},
  ): Promise<RawSmtpClient> {
    const host = '127.0.0.1';
    const local = options.localAddress ? { localAddress: options.localAddress } : {};
    return new Promise((resolve, reject) => {
      const socket = options.tls
        ? tls.connect({ port, host, ...local, rejectUnauthorized: false })
        : net.connect({ port, host, ...local });
      socket.once(options.tls ? 'secureConnect' : 'connect', () => {
        socket.off('error', reject);
        resolve(new RawSmtpClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** A client on a socket the test has already set up (e.g. TLS after a PROXY header). */
  static wrap(socket: net.Socket): RawSmtpClient {
    return new RawSmtpClient(socket);
  }

  /** Connects and sends a PROXY header (raw bytes) before anything else. */
  static async connectWithPreamble(port: number, preamble: Buffer | string): Promise<RawSmtpClient> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve).once('error', reject);
    });
    socket.write(preamble);
    return new RawSmtpClient(socket);
  }

  #attach(socket: net.Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #onData(chunk: string): void {
    this.#reads++;
    this.#buffer += chunk;
    let index = this.#buffer.indexOf('\r\n');
    while (index !== -1) {
      const line = this.#buffer.slice(0, index);
      this.#buffer = this.#buffer.slice(index + 2);
      this.#pending.push(line);
      if (!/^\d{3}-/.test(line)) {
        const code = Number(line.slice(0, 3));
        this.#replies.push({ code, lines: this.#pending, text: line.slice(4) });
        this.#pending = [];
      }
      index = this.#buffer.indexOf('\r\n');
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** How many reads the replies so far arrived in (several replies written at once arrive in one). */
  get reads(): number {
    return this.#reads;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The next reply; rejects if the connection closes first or after timeoutMs. */
  async reply(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (this.#replies.length === 0) {
      if (this.#closed) throw new Error('connection closed before a reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no reply in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#replies.shift() as Reply;
  }

  /** Resolves once the server has closed the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** Sends one command line and returns its reply. */
  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  async greeting(): Promise<Reply> {
    return this.reply();
  }

  async ehlo(name = 'client.test'): Promise<Reply> {
    return this.command(`EHLO ${name}`);
  }

  /** STARTTLS and a new EHLO on the encrypted channel. */
  async starttls(): Promise<Reply> {
    const ready = await this.command('STARTTLS');
    if (ready.code !== 220) throw new Error(`STARTTLS refused: ${ready.code} ${ready.text}`);
    const plain = this.#socket;
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve).once('error', reject);
    });
    this.#socket = secure;
    this.#attach(secure);
    return this.ehlo();
  }

  async authPlain(user: string, password: string): Promise<Reply> {
    return this.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
  }

  /** MAIL, RCPTs and DATA with a body given with its own line endings (no dot-stuffing). */
  async sendRaw(from: string, to: readonly string[], body: string | Buffer): Promise<Reply[]> {
    const replies = [await this.command(`MAIL FROM:<${from}>`)];
    for (const rcpt of to) replies.push(await this.command(`RCPT TO:<${rcpt}>`));
    const data = await this.command('DATA');
    replies.push(data);
    if (data.code !== 354) return replies;
    this.write(body);
    const text = typeof body === 'string' ? body : body.toString('latin1');
    this.write(text.endsWith('\r\n') ? '.\r\n' : '\r\n.\r\n');
    replies.push(await this.reply());
    return replies;
  }

  async quit(): Promise<void> {
    if (this.#closed) return;
    this.write('QUIT\r\n');
    await this.waitClosed().catch(() => this.#socket.destroy());
  }

  destroy(): void {
    this.#socket.destroy();
  }
}
