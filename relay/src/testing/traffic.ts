// Recorded traffic for usage and abuse tests: real SMTP sessions against a test relay,
// from a chosen loopback address, with the replies' codes kept.
import { PASSWORD } from './harness.ts';
import { RawSmtpClient } from './smtp-client.ts';

/** A body with an .exe attachment: refused at end of DATA (blocked_attachment). */
export const EXE_ATTACHMENT = [
  'Subject: invoice',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b"',
  '',
  '--b',
  'Content-Type: text/plain',
  '',
  'see attached',
  '--b',
  'Content-Type: application/octet-stream; name="tool.exe"',
  'Content-Disposition: attachment; filename="tool.exe"',
  'Content-Transfer-Encoding: base64',
  '',
  'TVo=',
  '--b--',
  '',
].join('\r\n');

export interface Transaction {
  from: string;
  to: string[];
  body?: string;
}

/** A client that has authenticated as `user` (AUTH must succeed). */
export async function authenticated(
  port: number,
  user: string,
  options: { from?: string; password?: string } = {},
): Promise<RawSmtpClient> {
  const c = await RawSmtpClient.connect(port, options.from ? { localAddress: options.from } : {});
  await c.greeting();
  await c.ehlo();
  const auth = await c.authPlain(user, options.password ?? PASSWORD);
  if (auth.code !== 235) {
    c.destroy();
    throw new Error(`AUTH as ${user} refused: ${auth.code} ${auth.text}`);
  }
  return c;
}

/**
 * One session on a plaintext-AUTH listener: AUTH as `user`, then each transaction.
 * Returns the code that ended each transaction (250, or the refusal), or [authCode]
 * when AUTH is refused.
 */
export async function session(
  port: number,
  user: string,
  transactions: readonly Transaction[],
  options: { from?: string; password?: string } = {},
): Promise<number[]> {
  const c = await RawSmtpClient.connect(port, options.from ? { localAddress: options.from } : {});
  try {
    await c.greeting();
    await c.ehlo();
    const auth = await c.authPlain(user, options.password ?? PASSWORD);
    if (auth.code !== 235) return [auth.code];
    const codes: number[] = [];
    for (const t of transactions) codes.push(await transaction(c, t));
    return codes;
  } finally {
    await c.quit();
  }
}

/** MAIL, RCPTs, DATA; stops at the first refusal of the transaction (then RSET) and returns its code. */
export async function transaction(c: RawSmtpClient, t: Transaction): Promise<number> {
  const mail = await c.command(`MAIL FROM:<${t.from}>`);
  if (mail.code !== 250) return mail.code;
  let accepted = 0;
  let refused = 0;
  for (const rcpt of t.to) {
    const code = (await c.command(`RCPT TO:<${rcpt}>`)).code;
    if (code === 250) accepted++;
    else refused = code;
  }
  if (accepted === 0) {
    await c.command('RSET');
    return refused;
  }
  const data = await c.command('DATA');
  if (data.code !== 354) {
    await c.command('RSET');
    return data.code;
  }
  const body = t.body ?? 'Subject: usage\r\n\r\nhello\r\n';
  c.write(body.endsWith('\r\n') ? `${body}.\r\n` : `${body}\r\n.\r\n`);
  return (await c.reply()).code;
}
