// The connection caps of one relay (all its listeners): open connections in all and per
// client IP. A connection takes its slot when it is accepted, before a PROXY header or an
// implicit TLS handshake, and gives it back when its socket closes, so connections that
// never finish their handshake count too.
import type { ReplyKey } from './replies.ts';

export interface ConnectionCaps {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

export class ConnectionSlots {
  #open = 0;
  readonly #perIp = new Map<string, number>();

  get open(): number {
    return this.#open;
  }

  /** Takes a slot for a connection from `ip`, or says which cap is reached. */
  acquire(ip: string, caps: ConnectionCaps): { ok: true } | { ok: false; refusal: ReplyKey } {
    if (this.#open >= caps.maxConnections) return { ok: false, refusal: 'TOO_MANY_CONNECTIONS' };
    const fromIp = this.#perIp.get(ip) ?? 0;
    if (fromIp >= caps.maxConnectionsPerIp) return { ok: false, refusal: 'TOO_MANY_CONNECTIONS_IP' };
    this.#open++;
    this.#perIp.set(ip, fromIp + 1);
    return { ok: true };
  }

  release(ip: string): void {
    this.#open--;
    const left = (this.#perIp.get(ip) ?? 1) - 1;
    if (left > 0) this.#perIp.set(ip, left);
    else this.#perIp.delete(ip);
  }
}
