// Benchmark entry (not a test): Redis round trips per accepted message and the DNSBL
// cache hit ratio, with two relays sharing one real redis-server and a real DNS server
// on loopback. Counts, not timings: they come from the relays' own metrics.
//   node bench/shared-state.bench.ts [messages]
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startDnsServer,
  startRedisServer,
  startTestRelay,
  type TestRelay,
} from '@sluice/relay/testing';

const messages = Number(process.argv[2] ?? 200);
const redis = await startRedisServer();
const dns = await startDnsServer();
dns.setA('2.0.0.127.bl.bench', ['127.0.0.9'], 3600); // a listed IP elsewhere; 127.0.0.1 is NXDOMAIN (clear)
const config = {
  listeners: [PLAIN_LISTENER],
  auth: { allowPlaintext: true },
  state: { backend: 'redis', namespace: 'bench', redis: { nodes: redis.nodes } },
  rateLimits: {
    perUser: [
      { what: 'messages', limit: 1_000_000, windowSeconds: 3600 },
      { what: 'recipients', limit: 1_000_000, windowSeconds: 86400 },
    ],
    perIp: [{ what: 'messages', limit: 1_000_000, windowSeconds: 3600 }],
  },
  dnsbl: { enabled: true, resolvers: [dns.address], zones: [{ zone: 'bl.bench' }] },
};
const relays = [await startTestRelay({ config }), await startTestRelay({ config })];

async function metric(
  t: TestRelay,
  name: string,
): Promise<Array<{ labels: Record<string, string>; value: number }>> {
  const json = await t.relay.metrics.registry.getMetricsAsJSON();
  const m = json.find((x) => x.name === name) as
    | { values: Array<{ labels: Record<string, string>; value: number }> }
    | undefined;
  return m?.values ?? [];
}

// one connection per 10 messages, alternating relays, as a pool of clients would
for (let sent = 0, i = 0; sent < messages; i++) {
  const t = relays[i % 2] as TestRelay;
  const c = await RawSmtpClient.connect(t.port('plain'));
  await c.greeting();
  await c.ehlo();
  await c.authPlain('alice', PASSWORD);
  for (let k = 0; k < 10 && sent < messages; k++, sent++) {
    await c.sendRaw(
      'alice@example.com',
      ['a@example.net', 'b@example.net', 'c@example.net'],
      'Subject: b\r\n\r\nx\r\n',
    );
  }
  await c.quit();
}

let accepted = 0;
let sessionOps = 0;
let messageOps = 0;
let usageOps = 0;
const tiers: Record<string, number> = { local: 0, shared: 0, dns: 0 };
for (const t of relays) {
  for (const v of await metric(t, 'sluice_smtp_messages_total'))
    if (v.labels.result === 'accepted') accepted += v.value;
  for (const v of await metric(t, 'sluice_state_operations_total')) {
    if (v.labels.op === 'consume') messageOps += v.value;
    else if (v.labels.op === 'usage_flush') usageOps += v.value;
    else sessionOps += v.value;
  }
  for (const v of await metric(t, 'sluice_dnsbl_lookups_total')) {
    const tier = v.labels.tier ?? 'dns';
    tiers[tier] = (tiers[tier] ?? 0) + v.value;
  }
}
const lookups = (tiers.local ?? 0) + (tiers.shared ?? 0) + (tiers.dns ?? 0);
const report = [
  '# Shared state: round trips and cache hits',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · redis-server on loopback`,
  '',
  `Two relays, one Redis; ${accepted} messages of 3 recipients in connections of 10 messages, DNSBL and rate limits on.`,
  '',
  '| measure | value |',
  '| --- | --- |',
  `| Redis round trips per accepted message (rate limits) | ${(messageOps / accepted).toFixed(2)} |`,
  `| Redis round trips per connection (slot, lock check, DNSBL cache) | ${(sessionOps / Math.ceil(accepted / 10)).toFixed(2)} |`,
  `| Redis round trips for usage per user (batched: one per relay per flush interval, ${usageOps} in all) | ${(usageOps / accepted).toFixed(3)} per message |`,
  `| all round trips per message | ${((messageOps + sessionOps + usageOps) / accepted).toFixed(2)} |`,
  `| DNSBL lookups answered by the local cache | ${tiers.local} |`,
  `| … by the shared cache (Redis) | ${tiers.shared} |`,
  `| … by DNS | ${tiers.dns} (DNS server saw ${dns.queries()} queries) |`,
  `| DNSBL cache hit ratio | ${(((tiers.local ?? 0) + (tiers.shared ?? 0)) / lookups).toFixed(3)} |`,
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/shared-state.md', import.meta.url), report);
for (const t of relays) await t.close();
await dns.close();
await redis.stop();
