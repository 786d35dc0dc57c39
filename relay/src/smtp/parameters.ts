// What smtp-server lets through in MAIL FROM and RCPT TO but a standard server refuses:
// parameters of extensions this server does not offer (RFC 5321 4.1.1.11: 555), and
// addresses that are not ASCII in a transaction that did not declare SMTPUTF8 (RFC 6531
// 3.4: 553 5.6.7). smtp-server checks the values of the parameters it knows and keeps
// any other in `args`; it parses addresses whatever their characters.
import type { SMTPServerAddress } from 'smtp-server';

/**
 * MAIL FROM parameters of the extensions EHLO offers: SIZE (RFC 1870), BODY (RFC 6152),
 * SMTPUTF8 (RFC 6531), AUTH (RFC 4954) and DSN's RET and ENVID (RFC 3461); RCPT TO takes
 * DSN's NOTIFY and ORCPT. smtp-server checks RET's and NOTIFY's values and ORCPT's form.
 */
export const MAIL_PARAMETERS: ReadonlySet<string> = new Set([
  'SIZE',
  'BODY',
  'SMTPUTF8',
  'AUTH',
  'RET',
  'ENVID',
]);
export const RCPT_PARAMETERS: ReadonlySet<string> = new Set(['NOTIFY', 'ORCPT']);

// RFC 3461 4.4 and 4.2: ENVID is at most 100 characters, ORCPT at most 500, both printable
// ASCII once xtext is decoded (they are copied into notices and into the next hop's
// commands); smtp-server has already refused control characters.
const ENVID_MAX = 100;
const ORCPT_MAX = 500;
const PRINTABLE = /^[\x20-\x7e]+$/;

/** A parameter's value (smtp-server has checked that RET and ENVID have one), or undefined. */
export function parameterValue(address: SMTPServerAddress, name: string): string | undefined {
  const value = address.args === false ? undefined : address.args[name];
  return typeof value === 'string' ? value : undefined;
}

/** Why a DSN parameter's value cannot be taken, or undefined when it can. */
export function badDsnValue(name: 'ENVID' | 'ORCPT', value: string): string | undefined {
  const max = name === 'ENVID' ? ENVID_MAX : ORCPT_MAX;
  if (value.length > max) return `longer than ${max} characters`;
  if (!PRINTABLE.test(value)) return 'not printable ASCII';
  return undefined;
}

/** The first parameter of the command not in `allowed`, as KEY or KEY=value (the key in upper case). */
export function unsupportedParameter(
  address: SMTPServerAddress,
  allowed: ReadonlySet<string>,
): string | undefined {
  if (!address.args) return undefined;
  for (const [key, value] of Object.entries(address.args)) {
    if (!allowed.has(key)) return value === true ? key : `${key}=${value}`;
  }
  return undefined;
}

/** The SIZE MAIL FROM declared (RFC 1870), 0 when none (smtp-server has checked its syntax). */
export function declaredSize(address: SMTPServerAddress): number {
  return Number(parameterValue(address, 'SIZE') ?? 0) || 0;
}

/** Whether MAIL FROM declared SMTPUTF8 (smtp-server has checked it takes no value). */
export function declaresSmtpUtf8(address: SMTPServerAddress): boolean {
  return address.args !== false && address.args.SMTPUTF8 === true;
}

/**
 * Where a recipient goes: the domainless <postmaster> (RFC 5321 4.5.1: every server
 * accepts it, in any case, for its own operator; smtp-server lets it through) goes to the
 * configured postmaster address, by default postmaster@<hostname>; any other as given.
 */
export function recipientAddress(rcpt: string, config: { hostname: string; postmaster?: string }): string {
  if (rcpt.toLowerCase() !== 'postmaster') return rcpt;
  return config.postmaster ?? `postmaster@${config.hostname}`;
}
