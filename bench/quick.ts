// A minute's check of a relay change (not part of make bench): Sluice alone under the
// small (or 1 MB) workload, restarted for each of a few rounds, median msgs/s and p99.
// Numbers move ±10 % between runs on a shared 2-core machine; compare.bench.ts is the
// measurement of record.
//   node bench/quick.ts [--medium] [--rounds N] [--messages M]
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startEnvironment } from './environment.ts';
import { percentiles, runLoad } from './loadgen.ts';
import { startFullSluice } from './peers/sluice.ts';
import { awaitArrival } from './run-one.ts';

const { values } = parseArgs({
  options: { medium: { type: 'boolean' }, rounds: { type: 'string' }, messages: { type: 'string' } },
});
const bytes = values.medium ? 1_000_000 : 10_000;
const rounds = Number(values.rounds ?? 4);
const messages = Number(values.messages ?? (values.medium ? 10 : 50));
const env = await startEnvironment();
const rates: number[] = [];
const p99s: number[] = [];
for (let round = 0; round < rounds; round++) {
  const workDir = await mkdtemp(join(env.tmpRoot, 'quick-'));
  const relay = await startFullSluice(env, workDir);

  const load = (runId: string, perConnection: number) =>
    runLoad({
      port: relay.port,
      connections: 20,
      messagesPerConnection: perConnection,
      recipients: 3,
      messageBytes: bytes,
      pipelining: true,
      starttls: false,
      auth: { user: env.user, password: env.password },
      runId,
    });
  await load(`quick-warm-${round}`, 1);
  const result = await load(`quick-${round}`, messages);
  const missing = await awaitArrival(env.sink, result.accepted, 60_000);
  await relay.stop();
  if (missing.length > 0) throw new Error(`${missing.length} accepted messages never reached the sink`);
  rates.push(result.msgsPerSecond);
  p99s.push(percentiles(result.latenciesMs).p99);
}
await env.close();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
process.stdout.write(
  `msgs/s ${rates.map((r) => r.toFixed(0)).join(' ')}; median ${median(rates).toFixed(0)}, p99 median ${median(p99s).toFixed(1)} ms\n`,
);
