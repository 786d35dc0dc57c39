// Internationalised addresses (SMTPUTF8, RFC 6531): what both receiving and delivering
// need to know about an address.

const NOT_ASCII = /[\u0080-\uffff]/;

/** An address with a character outside ASCII (an internationalised address, RFC 6531). */
export function isInternationalised(address: string): boolean {
  return NOT_ASCII.test(address);
}
