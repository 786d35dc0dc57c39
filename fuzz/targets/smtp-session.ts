// The SMTP front end to end: a real relay (relay/src/relay.ts, started as the tests start
// it) with smtp-server's connection and parser (SluiceConnection, SluiceParser) and Sluice's
// handlers, driven over a loopback socket by a client that sends the input's lines one
// command at a time. Lines after a 354 are message data up to a line ".". Checks, on every
// reply: well-formed lines with one code, an RFC 3463 enhanced code of the same class on
// every 4xx/5xx, exactly one reply per command (none missing, none extra), no close without
// 221 or 421 first, no error logged by the relay, nothing escaping as an exception; and each
// command's server-side work within the slice bound.
import { scryptSync } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { PASSWORD, PLAIN_LISTENER, startTestRelay, type TestRelay } from '../../relay/src/testing/harness.ts';
import type { FuzzTarget } from '../engine/fuzz-loop.ts';
import type { SliceProbe } from '../engine/slice-probe.ts';
import { CheckFailed, check } from './check.ts';

const MAX_LINES = 64;
const REPLY_LINE = /^([2-5]\d\d)([ -])(.*)$/s;
const ENHANCED = /^([245])\.\d{1,3}\.\d{1,3}( |$)/;

interface Reply {
  code: number;
  lines: string[];
}

let running: TestRelay | undefined;

function relay(): TestRelay {
  if (running === undefined) throw new Error('the relay is not started (setup failed)');
  return running;
}

let inputsSinceCleanup = 0;

/** A scrypt hash as cheap as the format allows: AUTH is fuzzed, not the password hash. */
function cheapHash(password: string): string {
  const salt = Buffer.from('sluice-fuzz-salt');
  const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
  const hash = scryptSync(password, salt, 32, { N: 2, r: 8, p: 1 });
  return `$scrypt$ln=1,r=8,p=1$${b64(salt)}$${b64(hash)}`;
}

/** Reads the socket into whole replies; a malformed reply line is a finding. */
class Client {
  readonly #socket: net.Socket;
  #buffer = '';
  #lines: string[] = [];
  readonly #replies: Reply[] = [];
  #waiter: (() => void) | null = null;
  closed = false;
  malformed: string | null = null;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.#onData(text));
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
      socket.once('connect', () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  get pending(): number {
    return this.#replies.length;
  }

  /** The code of the reply that next() would return now, if one has arrived. */
  peek(): number | undefined {
    return this.#replies[0]?.code;
  }

  write(text: string): void {
    if (!this.closed) this.#socket.write(text, 'latin1');
  }

  /** The next reply, or null once the server has closed and no reply is left. */
  async next(): Promise<Reply | null> {
    for (;;) {
      const reply = this.#replies.shift();
      if (reply !== undefined) return reply;
      if (this.closed || this.malformed !== null) return null;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onData(text: string): void {
    this.#buffer += text;
    for (let end = this.#buffer.indexOf('\r\n'); end !== -1; end = this.#buffer.indexOf('\r\n')) {
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      const match = REPLY_LINE.exec(line) ?? /^([2-5]\d\d)()()$/.exec(line);
      if (match === null) {
        this.malformed ??= `a reply line that is no reply line: ${JSON.stringify(line)}`;
        continue;
      }
      this.#lines.push(line);
      if (match[2] !== '-') {
        const codes = new Set(this.#lines.map((l) => l.slice(0, 3)));
        if (codes.size > 1) this.malformed ??= `one reply with several codes: ${JSON.stringify(this.#lines)}`;
        this.#replies.push({ code: Number(match[1]), lines: this.#lines });
        this.#lines = [];
      }
    }
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }
}

/** RFC 2034 §3: every reply carries an enhanced code except the greeting and replies to HELO/EHLO. */
const NO_ENHANCED_CODE = new Set(['HELO', 'EHLO', 'LHLO']);

function checkReply(reply: Reply, after: string): void {
  if (reply.code < 400) return;
  // smtp-server takes the verb as the text before the first space, upper-cased
  if (reply.code !== 421 && NO_ENHANCED_CODE.has(after.split(' ')[0]?.toUpperCase() ?? '')) return;
  for (const line of reply.lines) {
    const text = line.slice(4);
    const enhanced = ENHANCED.exec(text);
    check(
      enhanced !== null && enhanced[1] === String(reply.code)[0],
      `a ${reply.code} reply without an enhanced code of its class, after ${JSON.stringify(after)}: ${JSON.stringify(line)}`,
    );
  }
}

/** Runs the input as one session; returns when the connection is closed. */
async function session(input: Buffer, probe: SliceProbe, trace: boolean): Promise<void> {
  const lines = input
    .toString('latin1')
    .split('\n', MAX_LINES)
    .map((l) => l.replace(/\r$/, ''));
  const client = await Client.connect(relay().port('plain'));
  try {
    const greeting = await client.next();
    check(greeting !== null && greeting.code === 220, `greeting ${JSON.stringify(greeting)}`);
    // what exchange() learns from the replies: in DATA (lines so far), or the session over
    const state: { data: string[] | null; finished: boolean } = { data: null, finished: false };

    /** Sends what one reply answers and takes that reply; false once the session is over. */
    const exchange = async (text: string, what: string): Promise<boolean> => {
      // a 421 may come at any time (RFC 5321 §3.8): after the error reply that used up the
      // client's bad commands, say, as Postfix sends it
      if (client.peek() === 421) {
        const closing = await client.next();
        if (closing !== null) checkReply(closing, 'an unprompted 421');
        state.finished = true;
        return false;
      }
      check(client.pending === 0, `a reply nobody asked for, before ${JSON.stringify(what)}`);
      client.write(text);
      probe.begin();
      const reply = await client.next();
      probe.end();
      if (trace) console.log(JSON.stringify(text), '→', JSON.stringify(reply?.lines ?? 'closed'));
      if (client.malformed !== null)
        throw new CheckFailed(`${client.malformed}, after ${JSON.stringify(what)}`);
      check(reply !== null, `the connection closed without a reply to ${JSON.stringify(what)}`);
      checkReply(reply, what);
      if (reply.code === 221 || reply.code === 421) {
        state.finished = true;
        return false;
      }
      if (reply.code === 354) state.data = [];
      // after 220 to STARTTLS the server expects a TLS handshake, which this client does not make
      if (reply.code === 220) {
        state.finished = true;
        return false;
      }
      return true;
    };

    for (const line of lines) {
      if (state.data !== null) {
        if (line !== '.') {
          state.data.push(line);
          continue;
        }
        const body = state.data;
        state.data = null;
        if (!(await exchange(`${body.map((l) => `${l}\r\n`).join('')}.\r\n`, 'end of data'))) break;
        continue;
      }
      if (!(await exchange(`${line}\r\n`, line))) break;
    }
    if (!state.finished && state.data !== null) {
      const body: string[] = state.data;
      state.data = null;
      await exchange(`${body.map((l) => `${l}\r\n`).join('')}.\r\n`, 'end of data');
    }
    if (!state.finished) await exchange('QUIT\r\n', 'QUIT');
    check(client.pending === 0, 'a reply after the last one');
  } finally {
    client.destroy();
  }
}

/** trace: print each command and its reply (for reading a finding's input). */
export const createTarget = (options: { trace: boolean }): FuzzTarget => ({
  name: 'smtp-session',
  maxLength: 4096,
  dictionary: [
    'EHLO client.test\r\n',
    'HELO client.test\r\n',
    'AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n',
    'AUTH LOGIN\r\n',
    'YWxpY2U=\r\n',
    'Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==\r\n',
    'MAIL FROM:<alice@example.com>',
    'RCPT TO:<bob@example.net>',
    ' SIZE=',
    ' BODY=8BITMIME',
    ' BODY=BINARYMIME',
    ' SMTPUTF8',
    ' RET=HDRS',
    ' ENVID=',
    ' NOTIFY=SUCCESS,FAILURE',
    ' ORCPT=rfc822;',
    ' AUTH=<>',
    'DATA\r\n',
    'BDAT ',
    '\r\n.\r\n',
    'RSET\r\n',
    'NOOP\r\n',
    'VRFY ',
    'STARTTLS\r\n',
    'QUIT\r\n',
    '*\r\n',
    '<>',
    '@',
    '"',
    '\\',
    'xn--',
    'Content-Type: multipart/mixed; boundary=b\r\n',
    'Content-Disposition: attachment; filename=a.exe\r\n',
  ],
  async setup() {
    running = await startTestRelay({
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        limits: { maxRecipients: 3, maxMessageBytes: 2048, maxBadCommands: 10 },
        // counters would soon refuse every session from 127.0.0.1: the refusals are
        // tested elsewhere, here they would hide the rest of the protocol
        rateLimits: { perUser: [], perIp: [], concurrentConnectionsPerIp: 1000 },
        authLockout: { maxFailuresPerUser: 100_000_000, maxFailuresPerIp: 100_000_000 },
      },
      users: [{ username: 'alice', passwordHash: cheapHash(PASSWORD), suspended: false }],
      deliver: false,
      fsync: false,
    });
  },
  async teardown() {
    await running?.close();
  },
  async run(input, probe) {
    await session(input, probe, options.trace);
    const errors = relay().logs.lines.filter((l) => l.level === 'error' || l.level === 'fatal');
    relay().logs.lines.length = 0;
    check(errors.length === 0, `the relay logged an error: ${JSON.stringify(errors[0])}`);
    // accepted messages pile up in the spool: clear it now and then
    if (++inputsSinceCleanup >= 500) {
      inputsSinceCleanup = 0;
      const dir = relay().relay.spool.queueDir;
      for (const name of await readdir(dir)) await rm(join(dir, name), { force: true, recursive: true });
    }
  },
});
