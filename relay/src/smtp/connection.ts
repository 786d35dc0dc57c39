// smtp-server's connection, greeting without its 100 ms pregreet pause, with its input
// parser swapped for SluiceParser (a faster DATA phase, data-parser.ts), and with these
// changes:
// - replies to a pipelined batch are held until the parser has handled the chunk it came in
//   and leave in one write, and the batch's recipients are named ahead to the RCPT stage;
// - EHLO advertises AUTH only where AUTH would be accepted (after TLS, unless the policy
//   allows plaintext), and AUTH anywhere else gets 538 before any credential is read
//   (smtp-server checks this only on a listener that offers STARTTLS);
// - a reply whose text already starts with an enhanced status code comes from our reply
//   table and is sent as it is (smtp-server would otherwise derive a second, generic code
//   from the reply code alone);
// - every error reply is counted, so a client that keeps sending bad commands is
//   disconnected after maxBadCommands (Postfix's smtpd_hard_error_limit; smtp-server's
//   own fixed limit of 10 unknown commands gives way to it), and the closing replies for
//   too many errors or too many commands before AUTH (smtp-server's
//   maxAllowedUnauthenticatedCommands) come from the table;
// - a command line longer than its limit (line-limits.ts) gets 500 5.5.2 and the session
//   goes on;
// - addresses may have a quoted local part (address-path.ts).
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import type { Reason } from '../observability/reasons.ts';
import { parseQuotedPath } from './address-path.ts';
import { SluiceParser } from './data-parser.ts';
import { commandLineLimit } from './line-limits.ts';
import { ENHANCED_CODE_PREFIX, REPLIES, type ReplyKey, replyText } from './replies.ts';

export interface ReplyObserver {
  /**
   * Called for each 4xx/5xx reply the connection makes without a stage handler: smtp-server's
   * own (syntax, sequence) and the table replies the connection sends itself.
   */
  connectionRefusal(sessionId: string, code: number, reason: Reason, text: string): void;
  /** Called when the connection is closed for too many errors. */
  tooManyErrors(sessionId: string): void;
}

/** A table reply's text after the code: its enhanced code and its words. */
function tableText(key: ReplyKey, vars: Record<string, string | number> = {}): string {
  return `${REPLIES[key].enhanced} ${replyText(key, vars)}`;
}

const PROTOCOL_ERROR_CODES = new Set([500, 501, 502, 503, 504, 555]);

function libraryReason(code: number): Reason {
  if (code === 530 || code === 538) return 'auth_required';
  if (code === 552) return 'message_too_big';
  if (code === 421) return 'timeout';
  return 'protocol_error';
}

export class SluiceConnection extends SMTPConnection {
  #errors = 0;
  /** The socket whose writes are held until the end of this tick (see #holdReplies). */
  #held: Socket | null = null;
  #maxErrors: () => number;
  #observer: ReplyObserver;
  #allowPlaintextAuth: () => boolean;
  #recipientsAhead: ((sessionId: string, addresses: readonly string[]) => void) | undefined;
  /** The parser of the current input (a new one after STARTTLS). */
  #parser: SluiceParser | undefined;
  /** A batch's recipients were named ahead and are still being handled. */
  #ahead = false;
  /** smtp-server's own 'close' listeners on the plain socket (see upgrade). */
  #libraryCloseListeners: readonly unknown[] = [];

  constructor(
    server: SMTPServer,
    socket: Socket,
    socketOptions: ConstructorParameters<typeof SMTPConnection>[2],
    options: {
      maxErrors: () => number;
      observer: ReplyObserver;
      allowPlaintextAuth: () => boolean;
      /**
       * The recipients of a pipelined batch of RCPTs, before they are handled; called with
       * none once the batch has been handled.
       */
      recipientsAhead?: (sessionId: string, addresses: readonly string[]) => void;
    },
  ) {
    super(server, socket, socketOptions);
    this.#maxErrors = options.maxErrors;
    this.#observer = options.observer;
    this.#allowPlaintextAuth = options.allowPlaintextAuth;
    this.#recipientsAhead = options.recipientsAhead;
    this.#wire(this._parser as unknown as SluiceParser);
  }

  /** Connects a parser's hooks: recipients named ahead, and replies flushed when it idles. */
  #wire(parser: SluiceParser): void {
    const ahead = this.#recipientsAhead;
    if (ahead) {
      parser.onrecipients = (addresses) => {
        this.#ahead = true;
        ahead(this.id, addresses);
      };
    }
    parser.onidle = () => {
      this.#flushReplies();
      if (this.#ahead) {
        this.#ahead = false;
        ahead?.(this.id, []);
      }
    };
    this.#parser = parser;
  }

  /**
   * smtp-server's start, without its fixed 100 ms pause before the greeting (a pregreet
   * test for early talkers). This is a submission service: clients authenticate, and the
   * DNSBL check at connect and AUTH do the screening; like Postfix's submission service,
   * it greets at once. A client that talks before the greeting still gets "talk too soon".
   */
  override init(): void {
    const before = new Set<unknown>(this._socket.rawListeners('close'));
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      this.connectionReady();
    });
    this.#libraryCloseListeners = this._socket.rawListeners('close').filter((l) => !before.has(l));
  }

  /**
   * STARTTLS: smtp-server takes every listener off the plain socket before it wraps it in
   * TLS, also the listener's own 'close' listeners, which give the connection's slot back
   * (connection-slots.ts) and forget the socket. Without them every STARTTLS session kept
   * its slot for good, and after maxConnectionsPerIp of them the client's address was
   * refused until the relay restarted. They are put back; smtp-server's own are not.
   */
  override upgrade(callback: () => void, secureCallback?: () => void): void {
    const socket = this._socket;
    const library = new Set<unknown>(this.#libraryCloseListeners);
    const ours = socket.rawListeners('close').filter((l) => !library.has(l));
    super.upgrade(callback, secureCallback);
    for (const listener of ours) {
      if (!socket.rawListeners('close').includes(listener)) socket.on('close', listener as () => void);
    }
  }

  /**
   * RFC 4954 4: a mechanism that sends the password in the clear is refused without TLS
   * (538 5.7.11) unless the policy allows plaintext, on every kind of listener, before the
   * SASL exchange starts: no credential is read, checked or counted.
   */
  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (!this.secure && !this.#allowPlaintextAuth()) {
      this.#refuse('ENCRYPTION_REQUIRED');
      callback();
      return;
    }
    super.handler_AUTH(command, callback);
  }

  /** Sends a reply from the table and reports it as a refusal. */
  #refuse(key: ReplyKey, vars: Record<string, string | number> = {}): void {
    const spec = REPLIES[key];
    const text = tableText(key, vars);
    this.#observer.connectionRefusal(this.id, spec.code, spec.reason, text);
    this.send(spec.code, text);
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // smtp-server closes after 10 unknown commands whatever maxBadCommands says; ours counts them
    this._unrecognizedCommands = 0;
    const sasl = this._nextHandler !== false;
    if (this._ready && !this._upgrading && command.length + 2 > commandLineLimit(command, sasl)) {
      // an overlong answer to an AUTH challenge ends the SASL exchange
      this._nextHandler = false;
      this.#refuse('LINE_TOO_LONG');
      const next = callback ?? (() => undefined);
      setImmediate(() => this._whenWritable(next));
      return;
    }
    super._onCommand(command, callback);
  }

  /** smtp-server's address parsing, with quoted local parts (address-path.ts). */
  override _parseAddressCommand(
    rawName: string,
    rawCommand: Buffer | string,
  ): ReturnType<SMTPConnection['_parseAddressCommand']> {
    return parseQuotedPath(rawName, rawCommand, (name, command) => super._parseAddressCommand(name, command));
  }

  /** smtp-server's parser wiring (also after STARTTLS), with SluiceParser. */
  override _createParser(): SMTPStream {
    const parser = new SluiceParser();
    parser.oncommand = (command, callback) => this._onCommand(command, callback);
    parser.on('error', (err: Error) => this.send(421, `Error: ${err.message}`));
    // the first parser is made inside smtp-server's constructor, before this class's fields
    // exist: the constructor wires it then
    if (#parser in this) this.#wire(parser);
    return parser;
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const batch = code === 250 || code === 354;
    if (batch) this.#holdReplies();
    this.#reply(code, data, context);
    if (!batch) this.#flushReplies();
  }

  /**
   * The replies to a pipelined batch leave in one write: the 250s to its MAIL and RCPTs and
   * the 354 to its DATA are held until the parser has handled the chunk they came in (RFC
   * 2920 lets a server buffer its replies until it would wait for input), or until the end
   * of the tick for a reply made outside it. Before, each RCPT's 250 left alone whenever its
   * check waited for Redis. Any other reply (a refusal, the 220 before a TLS handshake,
   * 221) is written at once, after what is held.
   */
  #holdReplies(): void {
    const socket = this._socket;
    if (this.#held !== null || socket.destroyed) return;
    this.#held = socket;
    socket.cork();
    if (!this.#parser?.handlingInput) process.nextTick(() => this.#flushReplies());
  }

  /** smtp-server is closing the session for maxAllowedUnauthenticatedCommands. */
  #unauthenticatedLimitReached(): boolean {
    const max = this._maxAllowedUnauthenticatedCommands;
    return !this.session.user && max !== false && this._unauthenticatedCommands >= max;
  }

  #flushReplies(): void {
    const socket = this.#held;
    if (socket === null) return;
    this.#held = null;
    socket.uncork();
  }

  #reply(code: number, data?: string | string[] | null, context?: string | false): void {
    if (code === 250 && Array.isArray(data) && !this.secure && !this.#allowPlaintextAuth()) {
      return super.send(
        code,
        data.filter((line) => !line.startsWith('AUTH ')),
        context,
      );
    }
    const ours = typeof data === 'string' && ENHANCED_CODE_PREFIX.test(data);
    if (code === 421 && !ours && this.#unauthenticatedLimitReached()) {
      this.#observer.tooManyErrors(this.id);
      super.send(421, tableText('TOO_MANY_UNAUTHENTICATED', { hostname: this.name }), false);
      return;
    }
    super.send(code, data, ours ? false : context);
    if (code < 400) return;
    if (!ours) {
      this.#observer.connectionRefusal(
        this.id,
        code,
        libraryReason(code),
        typeof data === 'string' ? data : '',
      );
    }
    if (PROTOCOL_ERROR_CODES.has(code) && ++this.#errors >= this.#maxErrors() && code !== 421) {
      this.#observer.tooManyErrors(this.id);
      super.send(421, tableText('TOO_MANY_ERRORS', { hostname: this.name }), false);
    }
  }
}

/** What SMTPServer.connect() does, with our connection class. */
export function attachConnection(server: SMTPServer, connection: SluiceConnection): void {
  server.connections.add(connection);
  connection.on('error', (err: Error) => server.emit('error', err));
  connection.on('connect', (data: unknown) => server.emit('connect', data));
  connection.init();
}
