// DANE for SMTP (RFC 7672): TLSA records of an MX host, taken only when a validating
// resolver vouches for them (the AD bit, RFC 6840 5.7), and the check of the server's
// certificate against them. Node's resolver does not show the AD bit, so the queries go
// out with dns-socket (on dns-packet); the certificate matching is mx-connect's.

import type { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { AUTHENTIC_DATA, RECURSION_DESIRED } from 'dns-packet';
import dnsSocket, { type DnsSocket, type DnsSocketResponse } from 'dns-socket';

export interface TlsaRecord {
  usage: number;
  selector: number;
  mtype: number;
  cert: Buffer;
}

export type TlsaAnswer =
  /** No TLSA records, or none the resolver validated: DANE does not apply. */
  | { kind: 'none' }
  /** Validated records: at least one usable one (DANE-TA, DANE-EE) must match, over TLS. */
  | { kind: 'records'; records: TlsaRecord[] }
  /** The lookup failed (SERVFAIL, as a validator answers bogus data; a timeout): defer. */
  | { kind: 'failed'; reason: string };

/** What mx-connect's matcher reads of a certificate: its DER, and its public key as createPublicKey takes it. */
interface Matchable {
  raw: Buffer;
  publicKey: string;
}

const mxConnectDane = createRequire(import.meta.url)('mx-connect/lib/dane.js') as {
  verifyCertAgainstTlsa(
    cert: Matchable,
    records: TlsaRecord[],
    chain?: Matchable[],
  ): { valid: boolean; error: string | null; usage?: string };
};

/**
 * Whether `cert` itself matches one of `records`. mx-connect derives the SPKI with
 * createPublicKey(cert.publicKey), which refuses the public KeyObject an X509Certificate
 * holds (a PEM string it takes), and matches trust-anchor records only against a chain it
 * is given: the certificate is given as that chain, its links having been checked here.
 */
function verifyCertAgainstTlsa(cert: X509Certificate, records: TlsaRecord[]): { valid: boolean } {
  const matchable = {
    raw: cert.raw,
    publicKey: cert.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
  return mxConnectDane.verifyCertAgainstTlsa(matchable, records, [matchable]);
}

/** A TLSA record as dns-packet decodes it. */
interface WireTlsa {
  usage: number;
  selector: number;
  matchingType: number;
  certificate: Buffer;
}

const RCODE_NXDOMAIN = 'NXDOMAIN';
const DANE_TA = 2;
const DANE_EE = 3;

interface Server {
  host: string;
  port: number;
}

function parseServer(spec: string): Server {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  if (bracketed) return { host: bracketed[1] ?? '', port: Number(bracketed[2] ?? 53) };
  const [host = '', port] = spec.split(':');
  return { host, port: Number(port ?? 53) };
}

export class DaneResolver {
  readonly #server: Server;
  readonly #socket: DnsSocket;

  constructor(options: { server: string; timeoutMs: number }) {
    this.#server = parseServer(options.server);
    this.#socket = dnsSocket({ timeout: options.timeoutMs, retries: 2 });
  }

  /** The validated TLSA records of `_<port>._tcp.<host>` (RFC 7672 2.2). */
  async tlsa(host: string, port: number): Promise<TlsaAnswer> {
    const name = `_${port}._tcp.${host.replace(/\.$/, '')}`;
    let response: DnsSocketResponse;
    try {
      response = await this.#query(name, 'TLSA');
    } catch (err: unknown) {
      return { kind: 'failed', reason: `TLSA ${name}: ${(err as Error).message}` };
    }
    if (response.rcode === RCODE_NXDOMAIN) return { kind: 'none' };
    if (response.rcode !== 'NOERROR') return { kind: 'failed', reason: `TLSA ${name}: ${response.rcode}` };
    // an answer the resolver did not validate is no better than none (RFC 7672 2.2)
    if (!response.flag_ad) return { kind: 'none' };
    const records = (response.answers ?? [])
      .filter((a) => a.type === 'TLSA')
      .map((a) => {
        const data = a.data as unknown as WireTlsa;
        return {
          usage: data.usage,
          selector: data.selector,
          mtype: data.matchingType,
          cert: data.certificate,
        };
      });
    return records.length > 0 ? { kind: 'records', records } : { kind: 'none' };
  }

  close(): void {
    this.#socket.destroy();
  }

  #query(name: string, type: 'TLSA'): Promise<DnsSocketResponse> {
    return new Promise((resolve, reject) => {
      this.#socket.query(
        // AD in the query asks for the AD bit in the answer (RFC 6840 5.7)
        { flags: RECURSION_DESIRED | AUTHENTIC_DATA, questions: [{ type, name }] },
        this.#server.port,
        this.#server.host,
        (err, response) => (err || !response ? reject(err ?? new Error('no answer')) : resolve(response)),
      );
    });
  }
}

/**
 * Whether the server's certificate (and the chain it sent) matches the usable TLSA
 * records: DANE-EE (3) the server's own certificate or key, with no name check; DANE-TA
 * (2) a certificate of the chain that the server's certificate descends from (each link
 * checked). PKIX-TA and PKIX-EE (0, 1) are not usable for SMTP (RFC 7672 3.1.3); with no
 * usable record, TLS is still required but not authenticated.
 */
export function verifyDane(
  peer: X509Certificate,
  chain: readonly X509Certificate[],
  records: readonly TlsaRecord[],
): { ok: true; usage: string } | { ok: false; error: string } {
  const usable = records.filter((r) => r.usage === DANE_EE || r.usage === DANE_TA);
  if (usable.length === 0) return { ok: true, usage: 'unauthenticated (no usable TLSA record)' };
  const ee = usable.filter((r) => r.usage === DANE_EE);
  if (ee.length > 0) {
    const matched = verifyCertAgainstTlsa(peer, ee);
    if (matched.valid) return { ok: true, usage: 'DANE-EE' };
  }
  const ta = usable.filter((r) => r.usage === DANE_TA);
  // walk up from the server's certificate while each link is issued and signed by the next
  let current = peer;
  for (const next of chain) {
    if (!current.checkIssued(next) || !current.verify(next.publicKey)) break;
    if (ta.length > 0 && verifyCertAgainstTlsa(next, ta).valid) return { ok: true, usage: 'DANE-TA' };
    current = next;
  }
  return { ok: false, error: 'the certificate matches no TLSA record' };
}
