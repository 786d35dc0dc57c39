// Benchmark entry (not a test): what DKIM signing costs per accepted message. The same
// load as accept.bench.ts (20 connections × 25 messages × 3 recipients, 10 KB, AUTH PLAIN,
// durable spool with fsync and group commit) into relays that sign nothing, sign with an
// RSA-2048 key, and sign with RSA-2048 and Ed25519 (RFC 8463); runs alternate between the
// modes and the table reports medians of 3 runs, each as a ratio to unsigned acceptance in
// the same run. CPU per message is the whole process's (the client's share is the same in
// every mode), so its difference from unsigned is what signing adds. A second table times
// MessageSigner alone on the same message (no sockets, no spool).
//   node bench/dkim.bench.ts
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import type { DkimKeyConfig } from '@sluice/relay/config-schema';
import { loadDkimKeys } from '@sluice/relay/dkim-keys';
import { MessageSigner } from '@sluice/relay/dkim-signer';
import { PASSWORD, PLAIN_LISTENER, startTestRelay } from '@sluice/relay/testing';
import { sendAcceptLoad } from './util.ts';

const CONNECTIONS = 20;
const MESSAGES = 25;
const ROUNDS = 3;
const SIGNER_MESSAGES = 500;
const body =
  'From: Alice <alice@customer.example>\r\nTo: a@x.test\r\nSubject: bench\r\n\r\n' +
  '0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n'.repeat(140);

const dir = await mkdtemp(join(os.tmpdir(), 'sluice-dkim-bench-'));
const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;
await writeFile(join(dir, 'rsa.pem'), pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey));
await writeFile(join(dir, 'ed.pem'), pem(generateKeyPairSync('ed25519').privateKey));
const rsaKey = {
  domain: 'customer.example',
  selector: 's1',
  algorithm: 'rsa-sha256' as const,
  privateKeyFile: join(dir, 'rsa.pem'),
};
const edKey = {
  domain: 'customer.example',
  selector: 'e1',
  algorithm: 'ed25519-sha256' as const,
  privateKeyFile: join(dir, 'ed.pem'),
};

type Mode = { name: string; keys: DkimKeyConfig[] };
const modes: Mode[] = [
  { name: 'unsigned', keys: [] },
  { name: 'rsa-sha256 (2048)', keys: [rsaKey] },
  { name: 'rsa-sha256 + ed25519-sha256', keys: [rsaKey, edKey] },
];

interface Run {
  rate: number;
  cpuMsPerMessage: number;
}

async function run(mode: Mode): Promise<Run> {
  const t = await startTestRelay({
    config: {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      rateLimits: { perUser: [] },
      limits: { maxConnectionsPerIp: 1000 },
      dkim: { keys: mode.keys },
    },
  });
  const cpu = process.cpuUsage();
  const started = performance.now();
  await sendAcceptLoad({
    port: t.port('plain'),
    auth: { user: 'alice', password: PASSWORD },
    sender: 'alice@customer.example',
    body,
    connections: CONNECTIONS,
    messages: MESSAGES,
  });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const total = CONNECTIONS * MESSAGES;
  const signed = (await t.relay.metrics.dkimSignaturesTotal.get()).values
    .filter((v) => v.labels.result === 'signed')
    .reduce((sum, v) => sum + v.value, 0);
  if (signed !== (mode.keys.length ? total : 0))
    throw new Error(`${mode.name}: ${signed} of ${total} signed`);
  const queued = (await t.relay.spool.list()).length;
  if (queued !== total) throw new Error(`spool holds ${queued} messages`);
  await t.close();
  return { rate: total / seconds, cpuMsPerMessage: (used.user + used.system) / 1000 / total };
}

/** MessageSigner alone: microseconds per message, the message streamed in 16 KiB chunks. */
async function signerAlone(mode: Mode): Promise<number> {
  const keys = await loadDkimKeys({ keys: mode.keys }, 'bench');
  const bytes = Buffer.from(body);
  const chunks = Array.from({ length: Math.ceil(bytes.length / 16384) }, (_, i) =>
    bytes.subarray(i * 16384, (i + 1) * 16384),
  );
  const started = performance.now();
  for (let i = 0; i < SIGNER_MESSAGES; i++) {
    const signer = new MessageSigner(keys, { maxHeaderBytes: 65536 });
    for (const chunk of chunks) signer.update(chunk);
    signer.end();
    if (signer.outcome.signed !== mode.keys.length > 0) throw new Error(`${mode.name}: unexpected outcome`);
  }
  return ((performance.now() - started) * 1000) / SIGNER_MESSAGES;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const load = os.loadavg().map((l) => l.toFixed(2));
const results = new Map<string, Run[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of round % 2 ? [...modes].reverse() : modes) {
    results.set(mode.name, [...(results.get(mode.name) ?? []), await run(mode)]);
  }
}
const alone = new Map<string, number>();
for (const mode of modes) alone.set(mode.name, await signerAlone(mode));
await rm(dir, { recursive: true, force: true });

const unsigned = results.get('unsigned') ?? [];
const baseRate = median(unsigned.map((r) => r.rate));
const baseCpu = median(unsigned.map((r) => r.cpuMsPerMessage));
const baseAlone = alone.get('unsigned') ?? 0;
const report = [
  '# DKIM signing cost per accepted message',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · load average before ${load.join(' ')}`,
  '',
  `${CONNECTIONS} connections × ${MESSAGES} messages × 3 recipients, ${body.length} bytes, AUTH PLAIN, durable spool (fsync, group commit), relay and client in one process; medians of ${ROUNDS} runs (A/B/C, C/B/A, A/B/C). Every message was checked signed (sluice_dkim_signatures_total) and spooled.`,
  '',
  '| mode | msgs/s | vs unsigned | CPU ms per message (process) | added by signing |',
  '| --- | --- | --- | --- | --- |',
  ...modes.map((m) => {
    const rs = results.get(m.name) ?? [];
    const rate = median(rs.map((r) => r.rate));
    const cpu = median(rs.map((r) => r.cpuMsPerMessage));
    return `| ${m.name} | ${rate.toFixed(0)} | ${(rate / baseRate).toFixed(2)}× | ${cpu.toFixed(2)} | ${m.name === 'unsigned' ? '—' : `${(cpu - baseCpu).toFixed(2)} ms`} |`;
  }),
  '',
  `MessageSigner alone, ${SIGNER_MESSAGES} messages of ${body.length} bytes each (header parse, body hash, signatures):`,
  '',
  '| mode | µs per message | added by signing |',
  '| --- | --- | --- |',
  ...modes.map((m) => {
    const us = alone.get(m.name) ?? 0;
    return `| ${m.name} | ${us.toFixed(0)} | ${m.name === 'unsigned' ? '—' : `${(us - baseAlone).toFixed(0)} µs`} |`;
  }),
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/dkim.md', import.meta.url), report);
