// One SMTP listener: our own TCP server in front of smtp-server, so that the PROXY
// protocol (v1 and v2, from trusted networks only) and the implicit TLS handshake
// happen before the SMTP session, and so that every session runs on SluiceConnection.
// A connection takes its place under the connection caps as soon as it is accepted (after
// the PROXY header from a trusted proxy, which names the client): one over a cap on an
// implicit TLS listener is closed at once, without a handshake; on other listeners it
// gets the 421 from the table instead of a greeting.
import net from 'node:net';
import tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { ListenerConfig, RelayConfig } from '../config/schema.ts';
import { TrustedNetworks } from '../net/trusted-networks.ts';
import type { Logger } from '../observability/logger.ts';
import type { CertificatePair } from '../tls/certificate.ts';
import { attachConnection, SluiceConnection } from './connection.ts';
import type { ConnectionSlots } from './connection-slots.ts';
import type { SmtpHandlers } from './handlers.ts';
import { readProxyHeader } from './proxy-protocol.ts';
import type { RefusalRecorder } from './refusals.ts';
import { REPLIES, replyText } from './replies.ts';

function serverOptions(config: RelayConfig, listener: ListenerConfig): Partial<SMTPServerOptions> {
  return {
    size: config.limits.maxMessageBytes,
    authMethods: [...config.auth.methods],
    allowInsecureAuth: config.auth.allowPlaintext,
    socketTimeout: config.limits.idleTimeoutSeconds * 1000,
    // before AUTH a session needs EHLO, STARTTLS and EHLO again, which are no bad commands:
    // with maxBadCommands under 3 it could otherwise never authenticate
    maxAllowedUnauthenticatedCommands: config.limits.maxBadCommands + 3,
    hideSTARTTLS: listener.tls !== 'starttls',
    authRequiredMessage: replyText('AUTH_REQUIRED'),
  };
}

export class SmtpListener {
  readonly config: ListenerConfig;
  readonly #smtp: SMTPServer;
  readonly #net: net.Server;
  readonly #log: Logger;
  readonly #trusted: TrustedNetworks;
  readonly #handlers: SmtpHandlers;
  #secureContext: tls.SecureContext;
  #relayConfig: RelayConfig;
  /** Every refusal, the stages' and the connection's own, is recorded here. */
  readonly #refusals: RefusalRecorder;
  readonly #sockets = new Set<net.Socket>();
  readonly #slots: ConnectionSlots;
  readonly #reusePort: boolean;

  constructor(options: {
    listener: ListenerConfig;
    config: RelayConfig;
    certificate: CertificatePair;
    handlers: SmtpHandlers;
    logger: Logger;
    refusals: RefusalRecorder;
    slots: ConnectionSlots;
    /** Binds with SO_REUSEPORT, so that several worker processes share the port (workers/). */
    reusePort?: boolean;
  }) {
    const { listener, config, certificate, handlers } = options;
    this.#slots = options.slots;
    this.#reusePort = options.reusePort ?? false;
    this.config = listener;
    this.#relayConfig = config;
    this.#handlers = handlers;
    this.#refusals = options.refusals;
    this.#log = options.logger.child({ listener: listener.name });
    this.#trusted = new TrustedNetworks(listener.proxyProtocol ? listener.trustedProxies : []);
    this.#secureContext = tls.createSecureContext({ key: certificate.key, cert: certificate.cert });
    this.#smtp = new SMTPServer({
      ...serverOptions(config, listener),
      name: config.hostname,
      banner: 'Sluice',
      secure: listener.tls === 'implicit',
      key: certificate.key,
      cert: certificate.cert,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: false,
      disableReverseLookup: true,
      closeTimeout: 30_000,
      logger: false,
      onConnect: handlers.onConnect,
      onSecure: handlers.onSecure,
      onAuth: handlers.onAuth,
      onMailFrom: handlers.onMailFrom,
      onRcptTo: handlers.onRcptTo,
      onData: handlers.onData,
      onClose: handlers.onClose,
    });
    this.#smtp.on('error', (err: Error) => this.#log.debug({ event: 'smtp_error', err: err.message }));
    this.#net = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#net.once('error', reject);
      // exclusive: a cluster worker binds the socket itself instead of asking the primary for a
      // handle, and the kernel spreads new connections over the workers' sockets
      const sharing = this.#reusePort ? { exclusive: true, reusePort: true } : {};
      this.#net.listen({ port: this.config.port, host: this.config.address, ...sharing }, () => {
        this.#net.off('error', reject);
        const address = this.#net.address() as net.AddressInfo;
        this.#log.info({ event: 'listening', port: address.port, tls: this.config.tls }, 'SMTP listener up');
        resolve(address.port);
      });
    });
  }

  get port(): number {
    return (this.#net.address() as net.AddressInfo | null)?.port ?? 0;
  }

  /** Applies a reloaded config to new and open sessions (limits, auth, certificate). */
  update(config: RelayConfig, certificate?: CertificatePair): void {
    this.#relayConfig = config;
    Object.assign(this.#smtp.options, serverOptions(config, this.config));
    if (certificate) {
      this.#secureContext = tls.createSecureContext({ key: certificate.key, cert: certificate.cert });
      this.#smtp.updateSecureContext({ key: certificate.key, cert: certificate.cert });
    }
  }

  /** Stops accepting; open sessions get 421 after the grace period. */
  close(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      this.#net.close(() => resolve());
      const deadline = setTimeout(() => {
        for (const connection of this.#smtp.connections) {
          connection.send(
            421,
            `${REPLIES.SHUTTING_DOWN.enhanced} ${replyText('SHUTTING_DOWN', { hostname: this.#relayConfig.hostname })}`,
          );
          connection.close();
        }
        for (const socket of this.#sockets) socket.destroy();
      }, graceMs);
      deadline.unref();
      this.#net.once('close', () => clearTimeout(deadline));
    });
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', (err) => this.#log.debug({ event: 'socket_error', err: err.message }));
    const peer = socket.remoteAddress ?? '';
    const timeoutMs = this.#relayConfig.limits.handshakeTimeoutSeconds * 1000;
    const start = async () => {
      let remoteAddress = peer;
      let remotePort = socket.remotePort ?? 0;
      if (this.#trusted.size > 0 && this.#trusted.contains(peer)) {
        const info = await readProxyHeader(socket, { timeoutMs });
        if (info.kind === 'proxied') {
          remoteAddress = info.remoteAddress;
          remotePort = info.remotePort;
        }
      }
      const slot = this.#slots.acquire(remoteAddress, this.#relayConfig.limits);
      if (slot.ok) socket.once('close', () => this.#slots.release(remoteAddress));
      else if (this.config.tls === 'implicit') {
        const hostname = this.#relayConfig.hostname;
        this.#refusals.refuse(undefined, 'connect', slot.refusal, { hostname }, { clientIp: remoteAddress });
        socket.destroy();
        return;
      }
      let sessionSocket: net.Socket = socket;
      if (this.config.tls === 'implicit') sessionSocket = await this.#handshake(socket, timeoutMs);
      const connection = new SluiceConnection(
        this.#smtp,
        sessionSocket,
        { remoteAddress, remotePort },
        {
          maxErrors: () => this.#relayConfig.limits.maxBadCommands,
          observer: this.#refusals,
          allowPlaintextAuth: () => this.#relayConfig.auth.allowPlaintext,
          recipientsAhead: (sessionId, addresses) => this.#handlers.recipientsAhead(sessionId, addresses),
        },
      );
      if (!slot.ok) {
        this.#handlers.overCap(connection.id, slot.refusal);
        socket.once('close', () => this.#handlers.overCap(connection.id, undefined));
      }
      attachConnection(this.#smtp, connection);
      this.#armSessionTimer(connection, socket);
    };
    start().catch((err: unknown) => {
      this.#log.info(
        { event: 'connection_refused', peer, err: (err as Error).message },
        'connection dropped',
      );
      socket.destroy();
    });
  }

  #handshake(socket: net.Socket, timeoutMs: number): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const tlsSocket = new tls.TLSSocket(socket, { isServer: true, secureContext: this.#secureContext });
      const timer = setTimeout(() => reject(new Error('TLS handshake timed out')), timeoutMs);
      tlsSocket.once('secure', () => {
        clearTimeout(timer);
        resolve(tlsSocket);
      });
      tlsSocket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  #armSessionTimer(connection: SluiceConnection, socket: net.Socket): void {
    const timer = setTimeout(() => {
      const text = replyText('SESSION_TIMEOUT', { hostname: this.#relayConfig.hostname });
      this.#refusals.session(connection.id)?.log.info({ event: 'session_timeout' }, 'session time limit');
      connection.send(421, `${REPLIES.SESSION_TIMEOUT.enhanced} ${text}`);
    }, this.#relayConfig.limits.sessionTimeoutSeconds * 1000);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }
}
