// The embedded default: what `make run` starts with no config file. Everything lives
// under one local directory, ports are unprivileged and bound to loopback, state is in
// memory, and a demo user gets a fresh random password on every start.
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { RelayConfig } from './schema.ts';
import { validateRelayConfig } from './validate.ts';

export const DEFAULT_PORTS = { submission: 2587, smtps: 2465, admin: 9587 } as const;

export function embeddedConfig(
  baseDir: string,
  ports: { submission: number; smtps: number; admin: number } = DEFAULT_PORTS,
): RelayConfig {
  const dir = resolve(baseDir);
  return validateRelayConfig(
    {
      hostname: 'localhost',
      listeners: [
        { name: 'submission', address: '127.0.0.1', port: ports.submission, tls: 'starttls' },
        { name: 'smtps', address: '127.0.0.1', port: ports.smtps, tls: 'implicit' },
      ],
      spoolDir: join(dir, 'spool'),
      stateDir: join(dir, 'state'),
      usersFile: join(dir, 'users.yaml'),
      admin: { address: '127.0.0.1', port: ports.admin },
      // a laptop has no DNSBL-friendly resolver; a cluster policy turns this on
      dnsbl: { enabled: false },
    },
    'embedded default',
  );
}

/** A password a person can type: 20 characters from a 56-letter alphabet (about 116 bits). */
export function demoPassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  return [...randomBytes(20)].map((b) => alphabet[b % alphabet.length]).join('');
}
