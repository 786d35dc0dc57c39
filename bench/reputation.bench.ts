// Benchmark entry (not a test): what shaping per destination group and the suppression
// list cost in shared state per delivery. Two relays share one real redis-server and
// deliver to a real sink that stands in for Google's MX hosts (a loopback DNS server
// answers their names); 10 % of the recipients do not exist (550 5.1.1). The same run is
// made with shaping and suppression off and on; Redis's own count of commands
// (INFO commandstats) gives the round trips, a wall clock the delivery time.
//   node bench/reputation.bench.ts [messages]
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  startDnsServer,
  startRedisServer,
  startSmtpSink,
  startTestRelay,
  type TestRelay,
} from '../relay/src/testing/index.ts';
import { commandCalls } from './redis-admin.ts';

const messages = Number(process.argv[2] ?? 400);

type Mode = 'off' | 'on' | 'unlimited';

interface Run {
  mode: Mode;
  deliveries: number;
  commands: number;
  scripts: number;
  seconds: number;
}

function total(calls: Map<string, number>, names?: readonly string[]): number {
  let n = 0;
  for (const [name, c] of calls) if (names === undefined || names.includes(name)) n += c;
  return n;
}

async function run(mode: Mode): Promise<Run> {
  const redis = await startRedisServer();
  const dns = await startDnsServer();
  const sink = await startSmtpSink({ host: '127.0.0.2', keepBodies: false });
  dns.setA('aspmx.l.google.com', ['127.0.0.2']);
  dns.setMx('gmail.bench', [{ exchange: 'aspmx.l.google.com', priority: 5 }]);
  dns.setMx('sender.bench', [{ exchange: 'aspmx.l.google.com', priority: 5 }]);
  const on = mode !== 'off';
  // unlimited: the same shared-state calls with limits nothing reaches, to tell their cost from the limits' effect
  const unlimited = {
    groups: [],
    default: { connections: 10_000, messagesPerConnection: 100_000, messagesPerSecond: 100_000 },
  };
  const config = {
    listeners: [PLAIN_LISTENER],
    auth: { allowPlaintext: true },
    state: { backend: 'redis', namespace: 'bench', redis: { nodes: redis.nodes } },
    rateLimits: { perUser: [{ what: 'messages', limit: 1_000_000, windowSeconds: 3600 }], perIp: [] },
    usage: { flushIntervalSeconds: 60 },
    abuse: { enabled: false },
    delivery: { resolvers: [dns.address], port: sink.port, allowLocalAddresses: true },
    shaping: { enabled: on, ...(mode === 'unlimited' ? unlimited : {}) },
    suppression: { enabled: on },
  };
  const relays = [
    await startTestRelay({ config, deliver: true, fsync: false }),
    await startTestRelay({ config, deliver: true, fsync: false }),
  ];
  const invalid = new Set<string>();
  for (let i = 0; i < messages; i += 10) {
    const address = `gone${i}@gmail.bench`;
    invalid.add(address);
    sink.setRecipientReply(address, {
      code: 550,
      text: '5.1.1 The email account that you tried to reach does not exist',
    });
  }
  const before = await commandCalls(redis.port);
  const started = performance.now();
  // one connection per 10 messages, alternating relays; one recipient each
  for (let sent = 0, c = 0; sent < messages; c++) {
    const t = relays[c % 2] as TestRelay;
    const client = await RawSmtpClient.connect(t.port('plain'));
    await client.greeting();
    await client.ehlo();
    await client.authPlain('alice', PASSWORD);
    for (let k = 0; k < 10 && sent < messages; k++, sent++) {
      const to = sent % 10 === 0 ? `gone${sent}@gmail.bench` : `r${sent}@gmail.bench`;
      await client.sendRaw('alice@sender.bench', [to], 'Subject: b\r\n\r\nx\r\n');
    }
    await client.quit();
  }
  // every message delivered or bounced, and every bounce notice delivered
  const expected = messages; // the delivered ones and one notice per bounce
  for (;;) {
    const queued = relays.reduce((n, t) => n + (t.relay.delivery?.size ?? 0), 0);
    if (queued === 0 && sink.messages.length >= expected) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  const after = await commandCalls(redis.port);
  const diff = new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
  const deliveries = relays.reduce(
    (n, t) => n + t.logs.events('delivered').length + t.logs.events('bounced').length,
    0,
  );
  for (const t of relays) await t.close();
  await sink.close();
  await dns.close();
  await redis.stop();
  return {
    mode,
    deliveries,
    commands: total(diff),
    scripts: total(diff, ['evalsha', 'eval']),
    seconds,
  };
}

const off = await run('off');
const on = await run('on');
const free = await run('unlimited');
const per = (r: Run, n: number) => (n / r.deliveries).toFixed(2);
const report = [
  '# Reputation: shared-state cost per delivery',
  '',
  `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · load ${os.loadavg()[0]?.toFixed(2)} · redis-server on loopback`,
  '',
  `Two relays, one Redis; ${messages} messages of one recipient each to a domain whose MX is Google's (group google), 10 % to recipients that do not exist, and the bounce notices back; the same run with shaping and suppression off and on. Round trips are Redis's own command counts over the whole run (SMTP front included), so the difference is what shaping and suppression add.`,
  '',
  '| measure | off | on (Google: 5 connections, 50 per connection) | on, limits out of reach |',
  '| --- | --- | --- | --- |',
  `| deliveries (recipients delivered or bounced, notices included) | ${off.deliveries} | ${on.deliveries} | ${free.deliveries} |`,
  `| Redis commands per delivery (those inside scripts included) | ${per(off, off.commands)} | ${per(on, on.commands)} | ${per(free, free.commands)} |`,
  `| script calls (EVALSHA, one round trip each) per delivery | ${per(off, off.scripts)} | ${per(on, on.scripts)} | ${per(free, free.scripts)} |`,
  `| wall time, first submission to last delivery | ${off.seconds.toFixed(2)} s | ${on.seconds.toFixed(2)} s | ${free.seconds.toFixed(2)} s |`,
  '',
  "Per delivery job, shaping reads the group's throttle state (GET) and takes a message slot (one script); a new connection takes a permit of the new-connection rate and a connection slot, and gives the slot back (three scripts, at most 1 in 50 jobs for Google's 50 messages per connection); suppression costs one script per RCPT and one per recipient that bounces as invalid.",
  '',
].join('\n');
process.stdout.write(report);
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/reputation.md', import.meta.url), report);
