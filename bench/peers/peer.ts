// What the harness needs from each system under test, whatever it is.
import net from 'node:net';
import { DEFAULT_BLOCKED_EXTENSIONS } from '@sluice/relay/config-schema';

export interface PeerOptions {
  /** A fresh directory for this instance's config, spool and logs. */
  workDir: string;
  /** Where accepted mail is delivered (the sink). */
  sinkPort: number;
  /** PEM certificate and key for STARTTLS (the same RSA 2048 pair for every peer). */
  certFile: string;
  keyFile: string;
  user: string;
  password: string;
  /**
   * The DNS server holding the DNSBL zone, when it listens on port 53 (the only port a
   * system resolver speaks to): its IPv4 address.
   */
  dnsblNameserver?: string;
}

export interface RunningPeer {
  name: string;
  /** Submission port on 127.0.0.1: STARTTLS offered, AUTH PLAIN allowed without it. */
  port: number;
  /** Every instance's port when the system runs as several (port is the first). */
  ports?: number[];
  /** The processes whose memory and CPU count for this system. */
  pids(): number[];
  stop(): Promise<void>;
}

/** The DNSBL zone of the harness's DNS server; LISTED_CLIENT is listed in it, 127.0.0.1 is not. */
export const DNSBL_ZONE = 'bl.bench';
export const LISTED_CLIENT = '127.0.0.2';

/** The policy every peer is given, as far as it can express it (the relay's defaults). */
export const POLICY = {
  maxMessageBytes: 31_457_280,
  maxRecipients: 30,
  maxBadCommands: 10,
  blockedExtensions: DEFAULT_BLOCKED_EXTENSIONS,
} as const;

/** Resolves once something on the port sends an SMTP 220 greeting. */
export function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let text = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n')) {
        socket.end('QUIT\r\n');
        done(text.startsWith('220'));
      }
    });
  });
}
