// Line endings in text the relay writes itself (bounces, DSNs): CRLF only, as the relay
// stores and forwards nothing else (RFC 5321 2.3.8).

const LINE_END = /\r\n?|\n/g;

/** A whole message with every bare CR and bare LF made CRLF (for text the relay writes itself). */
export function toCrlf(message: Buffer): Buffer {
  // latin1 maps every byte to one character and back, so nothing else changes
  const text = message.toString('latin1');
  const crlf = text.replace(LINE_END, '\r\n');
  return crlf === text ? message : Buffer.from(crlf, 'latin1');
}
