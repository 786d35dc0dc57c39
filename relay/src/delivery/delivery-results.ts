import type { NodemailerError } from 'nodemailer/lib/errors';
import type { RecipientOutcome, RecipientResult } from './types.ts';

/** Why a whole job failed before (or instead of) a transaction; `reason` goes to the log. */
export interface Failure {
  outcome: RecipientOutcome;
  status: string;
  response: string;
  reason: string;
  remoteHost?: string;
}

/** The answers one transaction got. */
export interface Sent {
  /** The final reply to the message data, when the server took it. */
  response?: string;
  error?: NodemailerError;
  accepted: string[];
  rejected: Array<{ recipient: string; response: string }>;
}

export const SHUTTING_DOWN: Failure = local(
  'deferred',
  '4.3.2',
  'delivery is shutting down',
  'shutting_down',
);

export function local(outcome: RecipientOutcome, status: string, response: string, reason: string): Failure {
  return { outcome, status, response, reason };
}

export function fail(recipients: string[], failure: Failure): RecipientResult[] {
  const { outcome, status, response, remoteHost, reason } = failure;
  return recipients.map((address) => ({
    address,
    outcome,
    status,
    response,
    reason,
    ...(remoteHost !== undefined ? { remoteHost } : {}),
  }));
}

/** The reply code, and the enhanced status code (or one derived from the reply code). */
export function parseReply(reply: string): { code: number; status: string } {
  const code = Number(/^\d{3}/.exec(reply)?.[0] ?? 0);
  const cls = Math.floor(code / 100);
  const klass = cls === 2 || cls === 5 ? cls : 4;
  const enhanced = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])/.exec(reply);
  const status =
    enhanced !== null && Number(enhanced[1]) === klass
      ? `${enhanced[1]}.${enhanced[2]}.${enhanced[3]}`
      : `${klass}.0.0`;
  return { code, status };
}

export function fromReply(address: string, reply: string, remoteHost: string): RecipientResult {
  const { code, status } = parseReply(reply);
  const outcome: RecipientOutcome =
    code >= 200 && code < 300 ? 'delivered' : code >= 500 && code < 600 ? 'bounced' : 'deferred';
  return { address, outcome, status, response: reply.replace(/\r?\n/g, ' '), remoteHost };
}

/** The server a transaction went to, and the connection's addresses when it had one. */
export interface Peer {
  remoteHost: string;
  remoteAddress?: string | undefined;
  localAddress?: string | undefined;
}

/** Per-recipient results of one transaction. Only a 2xx to the message data means delivered. */
export function transactionResults(recipients: string[], sent: Sent, peer: Peer): RecipientResult[] {
  const { remoteHost } = peer;
  const addresses = {
    ...(peer.remoteAddress === undefined ? {} : { remoteAddress: peer.remoteAddress }),
    ...(peer.localAddress === undefined ? {} : { localAddress: peer.localAddress }),
  };
  return resultsOf(recipients, sent, remoteHost).map((r) => ({ ...r, ...addresses }));
}

function resultsOf(recipients: string[], sent: Sent, remoteHost: string): RecipientResult[] {
  const { error } = sent;
  if (error?.command === 'MAIL FROM') {
    const reply = error.response;
    if (reply !== undefined) return recipients.map((address) => fromReply(address, reply, remoteHost));
    // nodemailer refuses before MAIL FROM when the message is over the host's advertised SIZE
    const response = `message size exceeds the limit of ${remoteHost}`;
    return recipients.map((address) => ({
      address,
      outcome: 'bounced',
      status: '5.3.4',
      response,
      remoteHost,
    }));
  }
  const rejected = new Map(sent.rejected.map((r) => [r.recipient, r.response]));
  const accepted = new Set(sent.accepted);
  const dataReply = sent.response ?? (error?.command === 'DATA' ? error.response : undefined);
  return recipients.map((address) => {
    const rcptReply = rejected.get(address);
    if (rcptReply !== undefined) return fromReply(address, rcptReply, remoteHost);
    if (accepted.has(address) && dataReply !== undefined) return fromReply(address, dataReply, remoteHost);
    return unfinished(address, error, remoteHost);
  });
}

/** A recipient whose transaction broke off before its final answer: try again later. */
export function unfinished(
  address: string,
  error: NodemailerError | undefined,
  remoteHost: string,
): RecipientResult {
  if (error?.response !== undefined && /^4/.test(error.response))
    return fromReply(address, error.response, remoteHost);
  if (error?.code === 'ESTREAM') {
    return {
      address,
      outcome: 'deferred',
      status: '4.3.0',
      response: 'cannot read the spooled message',
      remoteHost,
    };
  }
  const response = `connection to ${remoteHost} lost: ${error?.message ?? 'no answer'}`;
  return { address, outcome: 'deferred', status: '4.4.2', response, remoteHost };
}

/** A session that could not be set up (greeting, EHLO, STARTTLS, AUTH) is always retried. */
export function setupFailure(err: unknown, remoteHost: string): Failure {
  if (err instanceof TlsSetupError) {
    return {
      outcome: 'deferred',
      status: '4.7.5',
      response: `TLS with ${remoteHost} failed: ${err.message}`,
      reason: 'tls_failed',
      remoteHost,
    };
  }
  const e = asSmtpError(err);
  const failure = (status: string, response: string, reason: string): Failure => ({
    outcome: 'deferred',
    status,
    response,
    reason,
    remoteHost,
  });
  if (e.code === 'EAUTH') {
    return failure(
      '4.7.0',
      `authentication at ${remoteHost} failed: ${e.response ?? e.message}`,
      'auth_failed',
    );
  }
  if (e.code === 'ETLS') {
    return failure('4.7.10', `TLS required but not offered by ${remoteHost}: ${e.response}`, 'tls_required');
  }
  if (e.response !== undefined) {
    // a refusal of the whole session (say a 554 greeting) is about this host, not the message
    const { status } = parseReply(e.response);
    return failure(
      `4${status.slice(1)}`,
      `${remoteHost} refused the session: ${e.response}`,
      'remote_refused',
    );
  }
  return failure('4.4.1', `no usable SMTP session with ${remoteHost}: ${e.message}`, 'connect_failed');
}

const REFUSED_AT_CONNECT = 'SluiceDestinationRefused';

/** The connect hook's refusal of an address the destination policy does not allow. */
export function refusedAtConnect(address: string, range: string): Error {
  return Object.assign(new Error(`${address} is not globally routable (${range})`), {
    code: REFUSED_AT_CONNECT,
  });
}

/**
 * mx-connect found no host to connect to; `earlier` is what a host that answered said (it
 * says more than the TCP failures of the hosts after it). Addresses the destination policy
 * refuses never get here (mx-targets.ts), unless the connect hook caught one: that bounces
 * like them (5.4.4).
 */
export function mxConnectFailure(domain: string, err: unknown, earlier?: Failure): Failure {
  const e = err as { code?: unknown; category?: unknown; temporary?: unknown; message?: unknown };
  const detail = typeof e.message === 'string' ? e.message : String(err);
  if (e.code === REFUSED_AT_CONNECT) {
    return local(
      'bounced',
      '5.4.4',
      `${domain}: ${detail}, which this relay does not deliver to`,
      'local_address',
    );
  }
  if (earlier !== undefined) return earlier;
  if (e.code === 'InvalidIpAddress') {
    return local('deferred', '4.4.4', `no usable MX host for ${domain}: ${detail}`, 'no_usable_mx');
  }
  if (e.category === 'dns') {
    return e.temporary === true
      ? local('deferred', '4.4.3', detail, 'dns_tempfail')
      : local('deferred', '4.4.4', `no usable MX host for ${domain}: ${detail}`, 'no_usable_mx');
  }
  return local(
    'deferred',
    '4.4.1',
    `could not connect to any MX host of ${domain}: ${detail}`,
    'connect_failed',
  );
}

export function asSmtpError(err: unknown): NodemailerError {
  return err instanceof Error ? (err as NodemailerError) : new Error(String(err));
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class TlsSetupError extends Error {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
    this.name = 'TlsSetupError';
  }
}

/** nodemailer reports handshake failures as socket errors; the original code tells them apart. */
export function isTlsError(err: unknown): boolean {
  const e = asSmtpError(err);
  if (e.code === 'ETLS') return e.response === undefined;
  const code = e.originalCode ?? '';
  return code === 'EPROTO' || /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_/.test(code);
}
