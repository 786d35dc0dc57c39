// How long a command line may be, in octets with its CRLF. RFC 5321 4.5.3.1.4 sets 512;
// each extension EHLO offers adds room for the parameters it defines (RFC 1869 / RFC 5321
// 2.2.1), and SASL lines get RFC 4954's 12288. A longer line gets 500 5.5.2 and the
// session goes on; the parser keeps at most MAX_COMMAND_LINE octets of any line.

/** RFC 5321 4.5.3.1.4: a command line, CRLF included. */
const COMMAND_LINE = 512;

/** RFC 4954 4: AUTH with an initial response, and each line of the SASL exchange. */
const SASL_LINE = 12288;

/**
 * MAIL FROM parameters, each at its longest with its leading space: SIZE= and 20 digits
 * (RFC 1870 6), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), RET=HDRS and ENVID= with
 * 100 characters (RFC 3461 4.3, 4.4), AUTH= with 500 (RFC 4954 5).
 */
const MAIL_PARAMETERS = 26 + 14 + 9 + 9 + 107 + 506;

/** RCPT TO parameters: NOTIFY=SUCCESS,FAILURE,DELAY and ORCPT= with 500 characters (RFC 3461 4.1, 4.2). */
const RCPT_PARAMETERS = 29 + 507;

/** The longest line the parser keeps; anything longer is cut there (and refused). */
export const MAX_COMMAND_LINE = SASL_LINE;

/**
 * The longest line allowed for this command, CRLF included. `sasl` is true for a line that
 * answers an AUTH challenge.
 */
export function commandLineLimit(line: Buffer, sasl: boolean): number {
  if (sasl) return SASL_LINE;
  const verb = line.subarray(0, 5).toString('latin1').toUpperCase();
  if (verb.startsWith('AUTH ') || verb === 'AUTH') return SASL_LINE;
  if (verb === 'MAIL ') return COMMAND_LINE + MAIL_PARAMETERS;
  if (verb === 'RCPT ') return COMMAND_LINE + RCPT_PARAMETERS;
  return COMMAND_LINE;
}
