// Renders the comparison as Markdown: medians per workload and system, the issue's
// targets, the policy each system enforced, Sluice's variants, and every run.
import type { ProbeResult } from './policy-probe.ts';
import type { RunRecord, SystemSpec, Workload } from './run-one.ts';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  haraka: string;
  postfix: string;
  redis: string;
  loadBefore: number[];
  loadAfter: number[];
  started: string;
  minutes: number;
  /** Which Sluice code ran: the commit, and how many files under relay/ differed from it. */
  sluiceCode: string;
  quick: boolean;
  rounds: number;
}

export interface SyncCount {
  system: string;
  label: string;
  accepted: number;
  missing: number;
  calls: Map<string, number>;
}

interface Group {
  title: string;
  workload: Workload;
  systems: SystemSpec[];
}

export interface ReportInput {
  machine: MachineInfo;
  groups: Group[];
  records: RunRecord[];
  probes: Map<string, ProbeResult[]>;
  syncCounts: SyncCount[];
  systems: SystemSpec[];
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const mib = (kb: number) => (kb > 0 ? (kb / 1024).toFixed(0) : '—');
/** The key of the two-instance Sluice system (two relay pods sharing Redis). */
export const PODS = 'sluice-x2';

interface Summary {
  runs: RunRecord[];
  ok: RunRecord[];
  msgsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  greetingP50: number;
  greetingP99: number;
  hwmKb: number;
  pssKb: number;
  addedKb: number;
  cpuMs: number;
  /** How late the load generator's own event loop ran, p99 ms. */
  clientLateP99: number;
  /** Sluice: share of 250s more than 50 ms after the final dot, by the relays' count. */
  relayReplyOver50: number;
  status: string;
}

/**
 * What a p99 is made of: the load generator's own lateness (a client elsewhere would not
 * pay it) and the relays' own count of slow replies after the final dot.
 */
function latencyParts(s: Summary): string {
  const parts = [`the load generator itself late by ${fmt(s.clientLateP99, 1)} ms at p99`];
  if (Number.isFinite(s.relayReplyOver50))
    parts.push(`${fmt(100 * s.relayReplyOver50, 1)} % of the relays' 250s over 50 ms after the final dot`);
  return ` (${parts.join('; ')})`;
}

function summarise(records: RunRecord[], group: string, system: string): Summary {
  const runs = records.filter((r) => r.group === group && r.system === system);
  const ok = runs.filter((r) => !r.failure);
  const of = (f: (r: RunRecord) => number) => median(ok.map(f));
  const failed = runs.filter((r) => r.failure);
  return {
    runs,
    ok,
    msgsPerSecond: of((r) => r.msgsPerSecond),
    p50: of((r) => r.p50),
    p90: of((r) => r.p90),
    p99: of((r) => r.p99),
    greetingP50: of((r) => r.greetingP50),
    greetingP99: of((r) => r.greetingP99),
    hwmKb: of((r) => r.hwmSumKb),
    pssKb: of((r) => r.peakPssKb),
    addedKb: of((r) => r.hwmSumKb - r.startRssKb),
    cpuMs: of((r) => r.cpuMsPerMessage.system),
    clientLateP99: of((r) => r.clientLateP99),
    relayReplyOver50: of((r) => r.relayReplyOver50 ?? Number.NaN),
    status:
      failed.length === 0
        ? `${ok.length}/${runs.length} ok`
        : `**FAILED** ${failed.length}/${runs.length}: ${failed[0]?.failure ?? ''}`,
  };
}

export function renderReport(input: ReportInput): string {
  const { machine, groups, records } = input;
  const label = (key: string) => input.systems.find((s) => s.key === key)?.label ?? key;
  const out: string[] = [];
  const line = (s = '') => out.push(s);
  const peerGroups = groups.filter((g) => g.systems.some((s) => s.key === 'haraka'));

  line('# Sluice, Haraka and Postfix side by side');
  line();
  line(
    `${machine.started} · ${machine.quick ? '**quick check, not a measurement**' : `${machine.rounds} rounds per comparison, systems alternating (A/B/C, then C/B/A, …), medians`} · took ${machine.minutes.toFixed(1)} min · \`make bench\` (\`node bench/compare.bench.ts\`)`,
  );
  line();
  line('| machine | |');
  line('| --- | --- |');
  line(`| CPU | ${machine.cores} × ${machine.cpu} |`);
  line(`| memory | ${machine.memoryGiB.toFixed(1)} GiB |`);
  line(`| kernel | ${machine.kernel} |`);
  line(`| Node (Sluice, Haraka, load generator, sink) | ${machine.node} |`);
  line(`| Haraka | ${machine.haraka} (npm, single process as shipped: \`nodes\` unset) |`);
  line(`| Postfix | ${machine.postfix} (Debian, private instance) |`);
  line(`| Redis | ${machine.redis} |`);
  line(`| Sluice code | ${machine.sluiceCode} |`);
  line(
    `| load average before / after | ${machine.loadBefore.map((x) => x.toFixed(2)).join(' ')} / ${machine.loadAfter.map((x) => x.toFixed(2)).join(' ')} (other work shares these cores) |`,
  );
  line();
  line(
    "Everything runs on loopback on this one machine: load generator (`bench/loadgen.ts`, one Node process), the system under test, the sink (`bench/sink.ts`, its own process) and, for Sluice, redis-server and the DNS server. **msgs/s** = messages answered 250 ÷ wall time from the first connect to the last reply (connections, EHLO and AUTH included). **Latency** = MAIL FROM written → 250 after the final dot. **Peak RSS** = VmHWM of the system's processes summed; for Postfix, dozens of processes sharing libraries, that sum counts shared pages once per process, so the peak PSS (proportional set size, sampled every 0.5 s, shared pages divided among their users) is given beside it. **CPU ms per message** = user + system time of the system's processes during the load ÷ messages accepted (the load generator, the sink and Redis are not counted). Every run starts the system afresh, warms it with 200 small messages over 20 connections (the same for every system), and then checks by Message-ID that every accepted message reached the sink; a run where one did not is marked failed and its numbers are left out.",
  );
  line();

  // ---- summary ----
  line('## Results (medians)');
  line();
  line(
    '| workload | system | msgs/s | p50 ms | p90 ms | p99 ms | peak RSS (PSS) MiB | CPU ms per message | Sluice ÷ this | runs |',
  );
  line('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const group of peerGroups) {
    const w = group.workload;
    const sluice = summarise(records, group.title, 'sluice');
    const pods = group.systems.some((x) => x.key === PODS)
      ? summarise(records, group.title, PODS)
      : undefined;
    for (const system of group.systems) {
      const s = summarise(records, group.title, system.key);
      let ratio = '';
      if (system.key === 'ceiling' || system.key.startsWith('floor'))
        ratio = `Sluice = ${fmt((100 * sluice.msgsPerSecond) / s.msgsPerSecond)} % of it${pods ? ` (×2: ${fmt((100 * pods.msgsPerSecond) / s.msgsPerSecond)} %)` : ''}`;
      else if (!system.key.startsWith('sluice'))
        ratio = `**${fmt(sluice.msgsPerSecond / s.msgsPerSecond, 2)}×**${pods ? ` (×2: **${fmt(pods.msgsPerSecond / s.msgsPerSecond, 2)}×**)` : ''}`;
      line(
        `| ${w.label} (${w.connections}×${(w.connectionsPerWorker ?? 1) * w.messages}) | ${system.label} | ${fmt(s.msgsPerSecond)} | ${fmt(s.p50, 1)} | ${fmt(s.p90, 1)} | ${fmt(s.p99, 1)} | ${system.start ? `${mib(s.hwmKb)} (${mib(s.pssKb)})` : '—'} | ${fmt(s.cpuMs, 2)} | ${ratio} | ${s.status} |`,
      );
    }
  }
  line();
  const large = peerGroups.find((g) => g.workload.key === 'large');
  if (large) {
    line(
      `Memory under the large workload (${large.workload.connections} concurrent ${(large.workload.bytes / 1e6).toFixed(0)} MB messages):`,
    );
    line();
    line('| system | RSS before the load MiB | peak RSS MiB | added MiB | peak PSS MiB |');
    line('| --- | --- | --- | --- | --- |');
    for (const system of large.systems) {
      const s = summarise(records, large.title, system.key);
      line(
        `| ${system.label} | ${mib(median(s.ok.map((r) => r.startRssKb)))} | ${mib(s.hwmKb)} | ${mib(s.addedKb)} | ${mib(s.pssKb)} |`,
      );
    }
    line();
  }

  // ---- targets ----
  // the comparison groups with the peers, by workload key (variants reuse the workloads)
  const titleOf = (workload: string) => peerGroups.find((g) => g.workload.key === workload)?.title ?? '';
  const best = (workload: string) =>
    Math.max(
      ...['haraka', 'postfix', 'postfix-no-flow-delay']
        .map((k) => summarise(records, titleOf(workload), k).msgsPerSecond)
        .filter(Number.isFinite),
    );
  const sl = (workload: string) => summarise(records, titleOf(workload), 'sluice');
  const ceiling = summarise(records, titleOf('small'), 'ceiling').msgsPerSecond;
  const smallOps = sl('small').ok.map((r) => Object.values(r.stateOps ?? {}).reduce((a, b) => a + b, 0));
  const redisCalls = median(sl('small').ok.map((r) => r.redisCallsPerMessage ?? Number.NaN));
  const targets: Array<[string, string, boolean]> = [
    [
      'small: ≥ 4× the best peer',
      `${fmt(sl('small').msgsPerSecond / best('small'), 2)}× (${fmt(sl('small').msgsPerSecond)} vs ${fmt(best('small'))} msgs/s)`,
      sl('small').msgsPerSecond >= 4 * best('small'),
    ],
    [
      'small: within a third of the client-to-sink ceiling',
      `${fmt((100 * sl('small').msgsPerSecond) / ceiling)} % of ${fmt(ceiling)} msgs/s`,
      sl('small').msgsPerSecond >= ceiling / 3,
    ],
    [
      '1 MB: ≥ 1.5× the best peer',
      `${fmt(sl('medium').msgsPerSecond / best('medium'), 2)}× (${fmt(sl('medium').msgsPerSecond)} vs ${fmt(best('medium'))} msgs/s)`,
      sl('medium').msgsPerSecond >= 1.5 * best('medium'),
    ],
    [
      'small: p99 accept latency < 50 ms',
      `${fmt(sl('small').p99, 1)} ms${latencyParts(sl('small'))}`,
      sl('small').p99 < 50,
    ],
    [
      'large: 10 concurrent 30 MB messages add < 64 MiB RSS',
      `${mib(sl('large').addedKb)} MiB added`,
      sl('large').addedKb < 64 * 1024,
    ],
    [
      '≤ 2 Redis round trips per accepted message (warm)',
      `${fmt(median(smallOps), 2)} (relay's count, per-connection operations included); ${fmt(redisCalls, 2)} script calls (Redis's count)`,
      median(smallOps) <= 2,
    ],
  ];
  // the same targets for two relay processes sharing Redis (two pods behind a Service)
  const p2 = (workload: string) => summarise(records, titleOf(workload), PODS);
  if (Number.isFinite(p2('small').msgsPerSecond)) {
    targets.push(
      [
        'small, Sluice ×2 (two pods): ≥ 4× the best peer',
        `${fmt(p2('small').msgsPerSecond / best('small'), 2)}× (${fmt(p2('small').msgsPerSecond)} vs ${fmt(best('small'))} msgs/s)`,
        p2('small').msgsPerSecond >= 4 * best('small'),
      ],
      [
        'small, Sluice ×2 (two pods): p99 accept latency < 50 ms',
        `${fmt(p2('small').p99, 1)} ms${latencyParts(p2('small'))}`,
        p2('small').p99 < 50,
      ],
    );
  }
  if (Number.isFinite(p2('medium').msgsPerSecond)) {
    targets.push([
      '1 MB, Sluice ×2 (two pods): ≥ 1.5× the best peer',
      `${fmt(p2('medium').msgsPerSecond / best('medium'), 2)}× (${fmt(p2('medium').msgsPerSecond)} vs ${fmt(best('medium'))} msgs/s)`,
      p2('medium').msgsPerSecond >= 1.5 * best('medium'),
    ]);
  }
  line('## Targets from issue 8');
  line();
  line('| target | measured | met |');
  line('| --- | --- | --- |');
  for (const [t, m, ok] of targets) line(`| ${t} | ${m} | ${ok ? 'yes' : '**no**'} |`);
  line();
  // what the SMTP libraries alone reach in the same run, as multiples of the best peer
  const floors = ['floor', 'floor-durable']
    .map((key) => ({ key, s: summarise(records, titleOf('small'), key) }))
    .filter(({ s }) => Number.isFinite(s.msgsPerSecond));
  if (floors.length > 0) {
    line(
      'What smtp-server and nodemailer allow on their own at the small workload (`bench/floor-relay.ts`: receive, answer 250, pass on to the sink over reused connections; nothing else), in the same run:',
    );
    line();
    line('| system | msgs/s | CPU ms per message | ÷ the best peer | Sluice = % of it |');
    line('| --- | --- | --- | --- | --- |');
    for (const { key, s } of floors) {
      line(
        `| ${label(key)} | ${fmt(s.msgsPerSecond)} | ${fmt(s.cpuMs, 2)} | ${fmt(s.msgsPerSecond / best('small'), 2)}× | ${fmt((100 * sl('small').msgsPerSecond) / s.msgsPerSecond)} % |`,
      );
    }
    line();
  }

  // ---- policy probes ----
  if (input.probes.size > 0) {
    const keys = [...input.probes.keys()];
    line('## Policy each system enforced (probed before the timed runs)');
    line();
    line(`| check | ${keys.map(label).join(' | ')} |`);
    line(`| --- | ${keys.map(() => '---').join(' | ')} |`);
    const names = input.probes.get(keys[0] ?? '')?.map((p) => p.name) ?? [];
    for (const name of names) {
      const cells = keys.map((k) => {
        const p = input.probes.get(k)?.find((x) => x.name === name);
        return p ? `${p.enforced ? 'yes' : '**no**'}: ${p.detail.replace(/\|/g, '/')}` : '—';
      });
      line(`| ${name} | ${cells.join(' | ')} |`);
    }
    line();
  }

  // ---- Sluice variants ----
  line('## Sluice variants');
  line();
  line(
    '| comparison | variant | msgs/s | p50 ms | p99 ms | greeting p50 / p99 ms | DNS queries | DNSBL answered by (local / shared / dns) | state ops per message | runs |',
  );
  line('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const group of groups.filter((g) => g.systems.every((s) => s.key.startsWith('sluice')))) {
    for (const system of group.systems) {
      const s = summarise(records, group.title, system.key);
      const tiers = (t: string) => median(s.ok.map((r) => r.dnsblTiers?.[t] ?? 0));
      const ops = median(s.ok.map((r) => Object.values(r.stateOps ?? {}).reduce((a, b) => a + b, 0)));
      line(
        `| ${group.title.replace('Sluice: ', '')} (${group.workload.label}) | ${system.label} | ${fmt(s.msgsPerSecond)} | ${fmt(s.p50, 1)} | ${fmt(s.p99, 1)} | ${fmt(s.greetingP50, 1)} / ${fmt(s.greetingP99, 1)} | ${fmt(median(s.ok.map((r) => r.dnsQueries)))} | ${fmt(tiers('local'))} / ${fmt(tiers('shared'))} / ${fmt(tiers('dns'))} | ${fmt(ops, 2)} | ${s.status} |`,
      );
    }
  }
  line();

  // ---- counts ----
  const opsNames = new Set<string>();
  for (const r of sl('small').ok) for (const k of Object.keys(r.stateOps ?? {})) opsNames.add(k);
  line('## Round trips and fsyncs per accepted message');
  line();
  line(
    `Redis round trips per accepted message, small workload with Redis (from \`sluice_state_operations_total\` on Sluice's /metrics, medians): ${[
      ...opsNames,
    ]
      .map((op) => `${op} ${fmt(median(sl('small').ok.map((r) => r.stateOps?.[op] ?? 0)), 2)}`)
      .join(
        ', ',
      )}; total **${fmt(median(smallOps), 2)}** (acquire_slot, lock_check and release_slot are once per connection; consume is at MAIL FROM and end of DATA for a session's first message, then once per message at end of DATA). Redis itself counted ${fmt(redisCalls, 2)} script calls (EVALSHA) per message (\`INFO commandstats\`).`,
  );
  line();
  if (input.syncCounts.length > 0) {
    line(
      "fsync-family system calls (fsync, fdatasync, sync_file_range, syncfs, msync) per accepted message, accept and delivery together, counted with `strace -f -c` attached to all of the system's processes in a separate, untimed pass of the small workload:",
    );
    line();
    line('| system | messages | fsync | fdatasync | other | per message |');
    line('| --- | --- | --- | --- | --- | --- |');
    for (const c of input.syncCounts) {
      const fsync = c.calls.get('fsync') ?? 0;
      const fdatasync = c.calls.get('fdatasync') ?? 0;
      let total = 0;
      for (const n of c.calls.values()) total += n;
      line(
        `| ${c.label} | ${c.accepted}${c.missing ? ` (**${c.missing} missing**)` : ''} | ${fsync} | ${fdatasync} | ${total - fsync - fdatasync} | ${c.accepted ? (total / c.accepted).toFixed(2) : '—'} |`,
      );
    }
    line();
  }

  // ---- every run ----
  line('## Every run');
  line();
  line(
    '| comparison | system | round | msgs/s | p50 ms | p99 ms | load generator late, p99 ms | accepted | arrived | refused | peak RSS / PSS MiB | CPU ms/msg: system / load generator / sink | load average at start | result |',
  );
  line('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of records) {
    line(
      `| ${r.group} | ${label(r.system)} | ${r.round + 1} | ${fmt(r.msgsPerSecond)} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${fmt(r.clientLateP99, 1)} | ${r.accepted} | ${r.arrived} | ${r.refused} | ${mib(r.hwmSumKb)} / ${mib(r.peakPssKb)} | ${fmt(r.cpuMsPerMessage.system, 2)} / ${fmt(r.cpuMsPerMessage.loadgen, 2)} / ${fmt(r.cpuMsPerMessage.sink, 2)} | ${fmt(r.loadAverage, 2)} | ${r.failure ? `**failed**: ${r.failure}${r.errors.length ? ` (${r.errors[0]})` : ''}` : 'ok'} |`,
    );
  }
  line();
  return out.join('\n');
}
