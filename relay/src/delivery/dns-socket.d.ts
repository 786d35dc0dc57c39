// The part of dns-socket (no type declarations of its own) that DANE lookups use.
declare module 'dns-socket' {
  import type { Answer, Packet } from 'dns-packet';
  /** A decoded answer: dns-packet's, with the header fields dns-packet's types leave out. */
  export interface DnsSocketResponse {
    rcode?: string;
    flag_ad?: boolean;
    answers?: Answer[];
  }
  export interface DnsSocket {
    query(
      query: Packet,
      port: number,
      host: string,
      callback: (err: Error | null, response?: DnsSocketResponse) => void,
    ): number;
    destroy(): void;
  }
  export default function dnsSocket(options?: { timeout?: number; retries?: number }): DnsSocket;
}
