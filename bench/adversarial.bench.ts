// Benchmark entry (not a test): adversarial MIME sent to a real relay, one message at a
// time, while /healthz is polled every 10 ms. The relay runs on this process's main
// thread, where perf_hooks.monitorEventLoopDelay records how long its event loop was
// held; the SMTP client and the /healthz poller run on a worker thread, so their own
// timing does not depend on the relay's loop. Reports the reply, the worst event-loop
// delay and the /healthz latencies for each input.
//   node bench/adversarial.bench.ts [--only NAME]   (--only: printed, no report written)
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DEFAULT_MIME_LIMITS } from '@sluice/relay/config-schema';
import { PASSWORD, PLAIN_LISTENER, RawSmtpClient, startTestRelay } from '@sluice/relay/testing';
import { zip } from '@sluice/relay/testing/zip';

interface Case {
  name: string;
  what: string;
  build: () => Buffer;
}

const CRLF = '\r\n';
const base64Lines = (bytes: Buffer) => `${bytes.toString('base64').replace(/.{76}/g, `$&${CRLF}`)}${CRLF}`;
const multipart = (boundary: string, parts: string[], preamble = '') =>
  `From: a@example.com${CRLF}MIME-Version: 1.0${CRLF}Content-Type: multipart/mixed; boundary="${boundary}"${CRLF}${CRLF}${preamble}` +
  parts.map((part) => `--${boundary}${CRLF}${part}${CRLF}`).join('') +
  `--${boundary}--${CRLF}`;

function nested(depth: number): string {
  let inner = `Content-Type: text/plain${CRLF}${CRLF}hi${CRLF}`;
  for (let level = depth; level > 0; level--) {
    const b = `b${level}`;
    inner = `Content-Type: multipart/mixed; boundary="${b}"${CRLF}${CRLF}--${b}${CRLF}${inner}${CRLF}--${b}--${CRLF}`;
  }
  return `From: a@example.com${CRLF}${inner}`;
}

function zipPart(entries: number): string {
  const archive = zip(Array.from({ length: entries }, (_, i) => ({ name: `f/${i}.txt` })));
  return `Content-Type: application/zip; name="many.zip"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}${base64Lines(archive)}`;
}

const limits = DEFAULT_MIME_LIMITS;
/** A Content-Disposition whose file name comes in `n` RFC 2231 continuations. */
const disposition = (n: number) =>
  `Content-Disposition: attachment${Array.from({ length: n }, (_, i) => `;${CRLF} filename*${i}*=${'a'.repeat(12)}`).join('')}`;
const CASES: Case[] = [
  {
    name: 'baseline',
    what: 'a 1 MB multipart with a text part and a base64 PDF',
    build: () =>
      Buffer.from(
        multipart('b', [
          `Content-Type: text/plain${CRLF}${CRLF}hello`,
          `Content-Type: application/pdf; name="r.pdf"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}${base64Lines(Buffer.alloc(750_000, 7))}`,
        ]),
      ),
  },
  {
    name: 'folded-100k',
    what: 'Subject folded over 100,000 lines (400 KB)',
    build: () =>
      Buffer.from(
        `From: a@example.com${CRLF}Subject: x${CRLF}${` a${CRLF}`.repeat(100_000)}${CRLF}body${CRLF}`,
      ),
  },
  {
    name: 'folded-at-limit',
    what: `Subject folded over ${limits.maxHeaderLines - 3} lines, in each of 100 parts`,
    build: () =>
      Buffer.from(
        multipart(
          'b',
          Array.from(
            { length: 100 },
            () =>
              `Content-Type: text/plain${CRLF}X-F: x${CRLF}${` a${CRLF}`.repeat(limits.maxHeaderLines - 3)}${CRLF}x`,
          ),
        ),
      ),
  },
  {
    name: 'rfc2231-7500',
    what: 'filename* in 7,500 continuations (~230 KB header), in each of 20 parts',
    build: () => Buffer.from(multipart('b', Array(20).fill(`${disposition(7500)}${CRLF}${CRLF}x`))),
  },
  {
    name: 'params-at-limit',
    what: `filename* in ${limits.maxMimeParameters} continuations, in each of ${limits.maxMimeParts - 1} parts`,
    build: () =>
      Buffer.from(
        multipart(
          'b',
          Array(limits.maxMimeParts - 1).fill(`${disposition(limits.maxMimeParameters)}${CRLF}${CRLF}x`),
        ),
      ),
  },
  {
    name: 'nested-at-limit',
    what: `${limits.maxMimeDepth} levels of multipart`,
    build: () => Buffer.from(nested(limits.maxMimeDepth)),
  },
  { name: 'nested-5000', what: '5,000 levels of multipart', build: () => Buffer.from(nested(5000)) },
  {
    name: 'parts-at-limit',
    what: `${limits.maxMimeParts - 1} parts`,
    build: () =>
      Buffer.from(
        multipart('b', Array(limits.maxMimeParts - 1).fill(`Content-Type: text/plain${CRLF}${CRLF}x`)),
      ),
  },
  {
    name: 'tiny-parts-300k',
    what: '300,000 empty parts (2.4 MB)',
    build: () => Buffer.from(multipart('b', Array(300_000).fill(''))),
  },
  {
    name: 'long-line',
    what: 'a 1,000,000-byte body line',
    build: () => Buffer.from(`Subject: x${CRLF}${CRLF}${'a'.repeat(1_000_000)}${CRLF}`),
  },
  {
    name: 'long-line-5m',
    what: 'a 5 MB body line (over the 1 MiB line bound)',
    build: () => Buffer.from(`Subject: x${CRLF}${CRLF}${'a'.repeat(5_000_000)}${CRLF}`),
  },
  {
    name: 'huge-boundary',
    what: '60 KB boundary, 100 near-miss boundary lines',
    build: () => {
      const boundary = 'B'.repeat(60_000);
      const nearMiss = `--${'B'.repeat(59_999)}C${CRLF}`.repeat(100);
      return Buffer.from(multipart(boundary, [`Content-Type: text/plain${CRLF}${CRLF}${nearMiss}x`]));
    },
  },
  {
    name: 'zip-50k',
    what: 'zip of 50,000 entries (5.6 MB base64)',
    build: () => Buffer.from(multipart('b', [zipPart(50_000)])),
  },
  {
    name: 'uuencode-spam',
    what: '200,000 "begin 644 fN.txt" lines in a text part (4.4 MB)',
    build: () =>
      Buffer.from(
        multipart('b', [
          `Content-Type: text/plain${CRLF}${CRLF}${Array.from({ length: 200_000 }, (_, i) => `begin 644 f${i}.txt`).join(CRLF)}`,
        ]),
      ),
  },
  {
    name: 'begin-no-eol',
    what: '"begin" repeated 1,000,000 times on one line (5 MB)',
    build: () => Buffer.from(`Subject: x${CRLF}${CRLF}${'begin'.repeat(1_000_000)}${CRLF}`),
  },
];

interface Outcome {
  size: number;
  reply: string;
  seconds: number;
  healthz: number[];
}

if (isMainThread) {
  const only = process.argv.indexOf('--only');
  const selected = only === -1 ? CASES : CASES.filter((c) => c.name === process.argv[only + 1]);
  const t = await startTestRelay({
    config: {
      listeners: [PLAIN_LISTENER],
      auth: { allowPlaintext: true },
      rateLimits: { perUser: [] },
      log: { level: 'warn' },
    },
  });
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { smtp: t.port('plain'), admin: t.relay.adminPort },
  });
  let answer: ((outcome: Outcome) => void) | undefined;
  worker.on('message', (outcome: Outcome) => answer?.(outcome));
  worker.on('error', (err) => {
    throw err;
  });
  const ask = (name: string) =>
    new Promise<Outcome>((resolve) => {
      answer = resolve;
      worker.postMessage(name);
    });
  const rows: string[] = [];
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  // warm-up (code loaded and compiled), not reported
  await ask('baseline');
  for (const c of selected) {
    delay.reset();
    const outcome = await ask(c.name);
    const worst = `${(delay.max / 1e6).toFixed(1)} / ${(delay.percentile(99) / 1e6).toFixed(1)}`;
    const sorted = [...outcome.healthz].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const row = `| ${c.name} | ${c.what} | ${(outcome.size / 1e6).toFixed(2)} MB | ${outcome.reply} | ${worst} | ${(sorted.at(-1) ?? 0).toFixed(1)} / ${median.toFixed(1)} (${sorted.length}) | ${outcome.seconds.toFixed(2)} |`;
    process.stdout.write(`${row}\n`);
    rows.push(row);
  }
  delay.disable();
  await worker.terminate();
  await t.close();
  const report = [
    '# Adversarial MIME: event-loop delay and /healthz latency',
    '',
    `${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · load average ${os.loadavg()[0]?.toFixed(2)}`,
    '',
    `One message at a time to one relay (MIME bounds: ${JSON.stringify(limits)}); /healthz polled every 10 ms meanwhile.`,
    '',
    '| input | what | size | reply | event-loop delay max / p99 (ms) | /healthz max / median ms (polls) | seconds to the reply |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  // a partial run (--only) leaves the report of the last full one
  if (only === -1) {
    await mkdir(new URL('./results/', import.meta.url), { recursive: true });
    await writeFile(new URL('./results/adversarial.md', import.meta.url), report);
  }
} else {
  const { smtp, admin } = workerData as { smtp: number; admin: number };
  parentPort?.on('message', async (name: string) => {
    const body = CASES.find((c) => c.name === name)?.build() ?? Buffer.alloc(0);
    const healthz: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const started = performance.now();
        await fetch(`http://127.0.0.1:${admin}/healthz`).then((r) => r.arrayBuffer());
        healthz.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const started = performance.now();
    const c = await RawSmtpClient.connect(smtp);
    await c.greeting();
    await c.ehlo();
    await c.authPlain('alice', PASSWORD);
    await c.command('MAIL FROM:<alice@example.com>');
    await c.command('RCPT TO:<bob@example.net>');
    await c.command('DATA');
    c.write(body);
    c.write('.\r\n');
    const reply = await c.reply(600_000);
    const seconds = (performance.now() - started) / 1000;
    await c.quit();
    polling = false;
    await poller;
    parentPort?.postMessage({
      size: body.length,
      reply: `${reply.code} ${reply.text.slice(0, 60)}`,
      seconds,
      healthz,
    } satisfies Outcome);
  });
}
