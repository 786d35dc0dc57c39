// The least a relay built on the project's chosen SMTP libraries can do: smtp-server
// receives (AUTH PLAIN, STARTTLS offered), keeps the message in memory, answers 250, and
// nodemailer's SMTPConnection passes it on to the sink over a few reused connections.
// No spool, no fsync, no checks, no MIME scan, no state store, no logs, no metrics: what
// smtp-server and nodemailer cost per message on their own, which bounds from below
// what any relay using them can cost. It greets at once, as Sluice does. Loses mail on a
// crash; a benchmark yardstick only.
// With a spool directory it also keeps each message durably before the 250, the plainest
// way (a file per message: write, fsync, close; unlinked once the sink took it; no
// directory fsync), so that the floor includes what "nothing lost" costs.
//   node bench/floor-relay.ts <sink port> <cert file> <key file> <user> <password> [spool dir]
// Prints "listening <port>" once it accepts connections.
import { readFileSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection as ServerConnection } from 'smtp-server/lib/smtp-connection.js';

const [sinkPortArg, certFile, keyFile, user, password, spoolDir] = process.argv.slice(2);
if (!sinkPortArg || !certFile || !keyFile || !user || !password) {
  process.stderr.write('usage: floor-relay.ts <sink port> <cert file> <key file> <user> <password>\n');
  process.exit(2);
}
const sinkPort = Number(sinkPortArg);

// smtp-server holds every greeting 100 ms (a pregreet test); Sluice greets at once, and so
// does the floor, so that what it measures is per-message work, not a pause per connection.
ServerConnection.prototype.init = function (this: ServerConnection): void {
  this._setListeners(() => this.connectionReady());
};

interface Job {
  from: string;
  to: string[];
  body: Buffer;
  /** The spool file holding it, when kept durably. */
  file?: string;
}

let sequence = 0;

async function keep(body: Buffer): Promise<string | undefined> {
  if (!spoolDir) return undefined;
  const file = join(spoolDir, String(++sequence));
  const handle = await open(file, 'wx');
  try {
    await handle.write(body);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return file;
}

/** Connections to the sink, each sending one message at a time; as many as Sluice opens. */
const MAX_CONNECTIONS = 20;
const idle: SMTPConnection[] = [];
const queue: Job[] = [];
let connections = 0;

function connect(): Promise<SMTPConnection> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({
      host: '127.0.0.1',
      port: sinkPort,
      ignoreTLS: true,
      name: 'floor.bench',
    });
    conn.once('error', reject);
    conn.connect(() => {
      conn.off('error', reject);
      conn.on('error', () => undefined);
      resolve(conn);
    });
  });
}

function send(conn: SMTPConnection, job: Job): Promise<void> {
  return new Promise((resolve, reject) =>
    conn.send({ from: job.from, to: job.to }, job.body, (err) => (err ? reject(err) : resolve())),
  );
}

async function worker(): Promise<void> {
  connections++;
  let conn = idle.pop() ?? (await connect());
  try {
    for (let job = queue.shift(); job; job = queue.shift()) {
      try {
        await send(conn, job);
        if (job.file) await unlink(job.file);
      } catch (err: unknown) {
        process.stderr.write(`send failed: ${String(err)}\n`);
        conn.close();
        conn = await connect();
      }
    }
    idle.push(conn);
  } finally {
    connections--;
  }
}

function enqueue(job: Job): void {
  queue.push(job);
  if (connections < MAX_CONNECTIONS) void worker();
}

const server = new SMTPServer({
  name: 'floor.bench',
  key: readFileSync(keyFile),
  cert: readFileSync(certFile),
  authMethods: ['PLAIN'],
  allowInsecureAuth: true,
  size: 31_457_280,
  logger: false,
  disableReverseLookup: true,
  onAuth(auth, _session, callback) {
    if (auth.username === user && auth.password === password) callback(null, { user });
    else callback(new Error('Invalid username or password'));
  },
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const envelope = session.envelope;
      const body = Buffer.concat(chunks);
      keep(body).then(
        (file) => {
          enqueue({
            from: envelope.mailFrom ? envelope.mailFrom.address : '',
            to: envelope.rcptTo.map((r) => r.address),
            body,
            ...(file ? { file } : {}),
          });
          callback(null);
        },
        (err: Error) => callback(err),
      );
    });
  },
});
server.listen(0, '127.0.0.1', () => {
  const address = server.server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
