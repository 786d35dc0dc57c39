// The trace header a relay must add (RFC 5321 4.4); "with" follows RFC 3848
// (ESMTPSA = ESMTP + TLS + AUTH), and RFC 6531 3.7.3 for a transaction that declared
// SMTPUTF8 (UTF8SMTPSA). Values come from the session, which smtp-server has
// already checked for control characters; they are sanitised again here because a
// header line is the one place where a stray CRLF would change the message.

import { rfc5322Date } from '../wire/date.ts';

function clean(value: string): string {
  return value.replace(/[\r\n\t()\\]/g, ' ').slice(0, 255);
}

export function receivedHeader(options: {
  helo: string;
  clientIp: string;
  hostname: string;
  tls: boolean;
  authenticated: boolean;
  /** MAIL FROM declared SMTPUTF8. */
  smtpUtf8?: boolean;
  queueId: string;
  recipients: readonly string[];
  date: Date;
}): string {
  const protocol = `${options.smtpUtf8 ? 'UTF8SMTP' : 'ESMTP'}${options.tls ? 'S' : ''}${options.authenticated ? 'A' : ''}`;
  const ip = options.clientIp.includes(':') ? `IPv6:${options.clientIp}` : options.clientIp;
  const only = options.recipients.length === 1 ? `\r\n\tfor <${clean(options.recipients[0] ?? '')}>` : '';
  return (
    `Received: from ${clean(options.helo || 'unknown')} ([${ip}])\r\n` +
    `\tby ${clean(options.hostname)} (Sluice) with ${protocol} id ${options.queueId}${only};\r\n` +
    `\t${rfc5322Date(options.date)}\r\n`
  );
}
