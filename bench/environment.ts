// What every benchmark run shares: the sink, a DNS server holding the DNSBL zone, a Redis
// server, a certificate for STARTTLS and the credentials, under one temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { startDnsServer } from '../relay/src/testing/dns-server.ts';
import { startRedisServer } from '../relay/src/testing/redis-server.ts';
import type { Context } from './run-one.ts';
import { startSinkProcess } from './sink-process.ts';
import { run } from './util.ts';

export interface Environment extends Context {
  /** Stops everything; keepFiles leaves the temporary directory for inspection. */
  close(keepFiles?: boolean): Promise<void>;
}

export async function startEnvironment(): Promise<Environment> {
  const tmpRoot = await mkdtemp(join(os.tmpdir(), 'sluice-bench-'));
  const certFile = join(tmpRoot, 'cert.pem');
  const keyFile = join(tmpRoot, 'key.pem');
  const subject = ['-subj', '/CN=bench.local', '-days', '2'];
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    ...subject,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  const sink = await startSinkProcess();
  const dns = await startDnsServer(); // every name NXDOMAIN: no client is listed
  const redis = await startRedisServer();
  return {
    sink,
    dns,
    redisPort: redis.port,
    tmpRoot,
    certFile,
    keyFile,
    user: 'alice',
    password: 'bench-Pa55-word',
    async close(keepFiles = false) {
      await sink.stop();
      await dns.close();
      await redis.stop();
      if (!keepFiles) await rm(tmpRoot, { recursive: true, force: true }).catch(() => {});
    },
  };
}
