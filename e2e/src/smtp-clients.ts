// SMTP clients pointed at a relay pod: the raw test client (exact replies, any source
// address) and nodemailer (what an application uses). The relay's certificate is
// self-signed here, so certificates are not verified.
import net from 'node:net';
import tls from 'node:tls';
import { RawSmtpClient, type Reply } from '@sluice/relay/testing';
import nodemailer from 'nodemailer';

export interface Endpoint {
  host: string;
  port: number;
}

/** A raw SMTP connection; `localAddress` makes it come from another loopback address. */
export async function connectRaw(
  to: Endpoint,
  options: { localAddress?: string; implicitTls?: boolean } = {},
): Promise<RawSmtpClient> {
  const target = {
    host: to.host,
    port: to.port,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  };
  const socket = options.implicitTls
    ? tls.connect({ ...target, rejectUnauthorized: false })
    : net.connect(target);
  await new Promise<void>((resolve, reject) => {
    socket.once(options.implicitTls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  return RawSmtpClient.wrap(socket);
}

/** Greeting, EHLO, STARTTLS, AUTH PLAIN: the client and the AUTH reply. */
export async function login(
  to: Endpoint,
  username: string,
  password: string,
  options: { localAddress?: string } = {},
): Promise<{ client: RawSmtpClient; auth: Reply }> {
  const client = await connectRaw(to, options);
  const greeting = await client.greeting();
  if (greeting.code !== 220) throw new Error(`greeting ${greeting.code} ${greeting.text}`);
  await client.ehlo();
  await client.starttls();
  return { client, auth: await client.authPlain(username, password) };
}

/** The AUTH reply a fresh session gets for these credentials (the session is closed after). */
export async function authReply(to: Endpoint, username: string, password: string): Promise<Reply> {
  const { client, auth } = await login(to, username, password);
  await client.quit();
  return auth;
}

/** A nodemailer transport to a pod's submission port: STARTTLS required, AUTH PLAIN. */
export function mailer(to: Endpoint, username: string, password: string) {
  return nodemailer.createTransport({
    host: to.host,
    port: to.port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: username, pass: password, method: 'PLAIN' },
    name: 'client.e2e.test',
  });
}

/** nodemailer's error for a refused message: the SMTP reply code and line. */
export interface SmtpError {
  responseCode?: number;
  response?: string;
  message: string;
}
