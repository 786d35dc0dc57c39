// What every benchmark run shares: the sink, a DNS server holding the DNSBL zone, a Redis
// server, a certificate for STARTTLS and the credentials, under one temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { startDnsServer, startRedisServer, type TestDnsServer } from '@sluice/relay/testing';
import { DNSBL_ZONE, LISTED_CLIENT } from './peers/peer.ts';
import { type SinkProcess, startSinkProcess } from './sink-process.ts';
import { run } from './util.ts';

/** What a run is given: the shared servers, the certificate and the credentials. */
export interface Context {
  sink: SinkProcess;
  dns: TestDnsServer;
  redisPort: number;
  tmpRoot: string;
  certFile: string;
  keyFile: string;
  user: string;
  password: string;
}

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
  const dns = await startDns();
  // listed with code 127.0.0.2, for the policy probe; no address the load comes from is listed
  dns.setA(listedName(LISTED_CLIENT), ['127.0.0.2']);
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

/** Where Postfix's resolver can reach it (port 53, which needs root); elsewhere when it cannot. */
const PORT_53_ADDRESS = '127.0.0.153';

async function startDns(): Promise<TestDnsServer> {
  try {
    return await startDnsServer({ host: PORT_53_ADDRESS, port: 53 });
  } catch (err: unknown) {
    process.stderr.write(
      `DNS server not on ${PORT_53_ADDRESS}:53 (${String(err)}): Postfix runs without DNSBL\n`,
    );
    return startDnsServer();
  }
}

/** The DNSBL query name of an IPv4 address: its octets reversed under the zone. */
function listedName(ip: string): string {
  return `${ip.split('.').reverse().join('.')}.${DNSBL_ZONE}`;
}
