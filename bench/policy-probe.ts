// Checks, before anything is timed, which rules of the policy a system under test really
// enforces: a peer that skips a check is doing less work, and the report says so.
import { zip } from '@sluice/relay/testing/zip';
import { SmtpConnection, SmtpError, type SmtpReply } from './loadgen.ts';
import { LISTED_CLIENT } from './peers/peer.ts';

export interface ProbeResult {
  name: string;
  /** true: refused as the policy wants; false: let through. */
  enforced: boolean;
  detail: string;
}

interface Credentials {
  user: string;
  password: string;
}

const SENDER = 'alice@bench.test';

/** Connected, greeted, EHLO done and authenticated; a refusal on the way throws SmtpError. */
async function session(
  port: number,
  auth: Credentials | undefined,
  localAddress?: string,
): Promise<SmtpConnection> {
  const c = await SmtpConnection.connect(port, '127.0.0.1', localAddress, 15_000);
  const greeting = await c.reply();
  if (greeting.code !== 220) throw new SmtpError('greeting', greeting);
  await c.ehlo('probe.bench');
  if (auth) {
    const token = Buffer.from(`\0${auth.user}\0${auth.password}`).toString('base64');
    await c.command(`AUTH PLAIN ${token}`, 235);
  }
  return c;
}

const text = (r: SmtpReply) => r.lines.join(' ').slice(0, 90);

/** Sends one message step by step; returns the first non-success reply, or the final one. */
async function send(
  c: SmtpConnection,
  rcpts: string[],
  body: string,
): Promise<{ reply: SmtpReply; accepted: number }> {
  c.write(`MAIL FROM:<${SENDER}>\r\n`);
  let reply = await c.reply();
  if (reply.code !== 250) return { reply, accepted: 0 };
  let accepted = 0;
  for (const r of rcpts) {
    c.write(`RCPT TO:<${r}>\r\n`);
    const rr = await c.reply();
    if (rr.code === 250) accepted++;
    else reply = rr;
  }
  if (accepted === 0) return { reply, accepted };
  c.write('DATA\r\n');
  const data = await c.reply();
  if (data.code !== 354) return { reply: data, accepted };
  c.write(body, '.\r\n');
  return { reply: await c.reply(), accepted };
}

// A small .exe's first bytes, as the attachments' content
const EXE_BASE64 = 'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

function message(id: string, attachmentHeader: string, base64 = EXE_BASE64): string {
  return [
    `From: <${SENDER}>`,
    'To: <a@sink.bench>',
    'Subject: probe',
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${id}@probe.bench>`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'hello',
    '--b1',
    attachmentHeader,
    'Content-Transfer-Encoding: base64',
    '',
    ...(base64.match(/.{1,76}/g) ?? []),
    '--b1--',
    '',
  ].join('\r\n');
}

/** Runs every probe against a system listening on port. */
export async function probePolicy(
  port: number,
  auth: Credentials,
  maxRecipients: number,
): Promise<ProbeResult[]> {
  const results: ProbeResult[] = [];
  const probe = async (name: string, fn: () => Promise<{ enforced: boolean; detail: string }>) => {
    try {
      results.push({ name, ...(await fn()) });
    } catch (err: unknown) {
      results.push({
        name,
        enforced: false,
        detail: `probe failed: ${err instanceof Error ? err.message : err}`,
      });
    }
  };
  const rcpts = (n: number) => Array.from({ length: n }, (_, i) => `p${i}@sink.bench`);

  await probe('AUTH required to relay', async () => {
    const c = await session(port, undefined);
    const { reply, accepted } = await send(c, rcpts(1), message('noauth', 'Content-Type: text/plain'));
    c.close();
    const enforced = accepted === 0 || reply.code >= 400;
    return { enforced, detail: text(reply) };
  });
  await probe(`at most ${maxRecipients} recipients per message`, async () => {
    const c = await session(port, auth);
    const { reply, accepted } = await send(
      c,
      rcpts(maxRecipients + 1),
      message('rcpts', 'Content-Type: text/plain'),
    );
    c.close();
    return { enforced: accepted <= maxRecipients, detail: `${accepted} RCPTs accepted; ${text(reply)}` };
  });
  await probe('blocked attachment (filename="invoice.exe")', async () => {
    const c = await session(port, auth);
    const { reply } = await send(
      c,
      rcpts(1),
      message(
        'exe',
        'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="invoice.exe"',
      ),
    );
    c.close();
    return { enforced: reply.code >= 500, detail: text(reply) };
  });
  await probe("blocked attachment, RFC 2231 encoded (filename*=UTF-8''invoice%2Eexe)", async () => {
    const c = await session(port, auth);
    const { reply } = await send(
      c,
      rcpts(1),
      message(
        'exe2231',
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''invoice%2Eexe",
      ),
    );
    c.close();
    return { enforced: reply.code >= 500, detail: text(reply) };
  });
  await probe('blocked attachment inside a zip (invoice.zip holding invoice.exe)', async () => {
    const c = await session(port, auth);
    const archive = zip([{ name: 'invoice.exe', data: 'MZ' }]);
    const { reply } = await send(
      c,
      rcpts(1),
      message(
        'zip',
        'Content-Type: application/zip\r\nContent-Disposition: attachment; filename="invoice.zip"',
        archive.toString('base64'),
      ),
    );
    c.close();
    return { enforced: reply.code >= 500, detail: text(reply) };
  });
  await probe(`client listed in the DNSBL (connects from ${LISTED_CLIENT})`, async () => {
    let c: SmtpConnection;
    try {
      c = await session(port, auth, LISTED_CLIENT);
    } catch (err: unknown) {
      if (!(err instanceof SmtpError) || err.reply === undefined) throw err;
      return { enforced: err.reply.code >= 400, detail: `${err.message.split(':')[0]}: ${text(err.reply)}` };
    }
    const { reply, accepted } = await send(c, rcpts(1), message('listed', 'Content-Type: text/plain'));
    c.close();
    return { enforced: accepted === 0 || reply.code >= 400, detail: text(reply) };
  });
  await probe('message size limit (MAIL FROM SIZE=40000000)', async () => {
    const c = await session(port, auth);
    c.write(`MAIL FROM:<${SENDER}> SIZE=40000000\r\n`);
    const reply = await c.reply();
    c.close();
    return { enforced: reply.code >= 500, detail: text(reply) };
  });
  return results;
}
