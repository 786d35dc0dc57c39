// The SMTP front as a protocol adapter: smtp-server's callbacks, translated into the stages
// (stages/*.ts: connect, AUTH, MAIL, RCPT, DATA), each of which is given only its own port
// and takes its decisions from policy/. The adapter decides nothing: it finds the session's
// state, calls the stage, and turns the stage's answer into the callback smtp-server
// expects. Every refusal goes through the one recorder (refusals.ts).
import type { TLSSocket } from 'node:tls';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server';
import type { RefusalRecorder } from './refusals.ts';
import type { ReplyKey } from './replies.ts';
import type { RelayRuntime } from './runtime.ts';
import { AuthStage } from './stages/auth.ts';
import { ConnectStage } from './stages/connect.ts';
import { DataStage } from './stages/data.ts';
import { MailStage } from './stages/mail.ts';
import { RcptStage } from './stages/rcpt.ts';
import type { StageResult } from './stages/stage.ts';

type Callback = (err?: Error | null) => void;

/** Calls back at once when the stage answered at once, else when its promise settles. */
function reply(result: StageResult, callback: Callback): void {
  if (result instanceof Promise) {
    result.then(
      (err) => callback(err),
      (err: Error) => callback(err),
    );
  } else callback(result);
}

export class SmtpHandlers {
  readonly #refusals: RefusalRecorder;
  readonly #connect: ConnectStage;
  readonly #auth: AuthStage;
  readonly #mail: MailStage;
  readonly #rcpt: RcptStage;
  readonly #data: DataStage;

  constructor(rt: RelayRuntime, listener: string, refusals: RefusalRecorder) {
    this.#refusals = refusals;
    this.#connect = new ConnectStage(rt, listener, refusals);
    this.#auth = new AuthStage(rt, refusals);
    this.#mail = new MailStage(rt, refusals);
    this.#rcpt = new RcptStage(rt, refusals);
    this.#data = new DataStage(rt, refusals);
  }

  /** The listener's verdict on the connection caps at accept (ConnectStage.overCap). */
  overCap(sessionId: string, refusal: ReplyKey | undefined): void {
    this.#connect.overCap(sessionId, refusal);
  }

  onConnect = (session: SMTPServerSession, callback: Callback): void => {
    reply(this.#connect.connect(session.id, session.remoteAddress), callback);
  };

  onSecure = (socket: TLSSocket, session: SMTPServerSession, callback: Callback): void => {
    const version = socket.getProtocol?.() ?? 'unknown';
    this.#connect.secure(session.id, version, socket.getCipher?.()?.standardName ?? 'unknown');
    callback();
  };

  onClose = (session: SMTPServerSession): void => {
    this.#connect.close(session.id, {
      secure: Boolean(session.secure),
      helo: session.hostNameAppearsAs || undefined,
    });
  };

  onAuth = (
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void => {
    const username = auth.username ?? '';
    const attempt = { username, password: auth.password ?? '', method: auth.method };
    void this.#auth
      .auth(this.#refusals.session(session.id), attempt)
      .then((err) => (err ? callback(err) : callback(null, { user: username })));
  };

  onMailFrom = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    reply(this.#mail.mailFrom(this.#refusals.session(session.id), address), callback);
  };

  /** A pipelined batch's recipients, before its RCPTs are handled (RcptStage.ahead). */
  recipientsAhead(sessionId: string, addresses: readonly string[]): void {
    this.#rcpt.ahead(this.#refusals.session(sessionId), addresses);
  }

  onRcptTo = (address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void => {
    reply(this.#rcpt.rcptTo(this.#refusals.session(session.id), address), callback);
  };

  onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void => {
    const result = this.#data.data(this.#refusals.session(session.id), session, stream);
    if (result instanceof Promise) {
      result.then(
        (message) => callback(null, message),
        (err: Error) => callback(err),
      );
    } else callback(result);
  };
}
