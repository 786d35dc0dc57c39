// The generated metrics reference (docs/reference/relay-metrics.md) against what a relay's /metrics really shows after real
// traffic (accepted, refused and delivered mail, DNSBL lookups, a protocol error): the
// same metrics with the same types, help and labels, no label that would carry a user or
// an address, and every reason value from the closed list.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { metricDocs, parseMetricsTable } from '@sluice/tools/metrics-docs';
import { QUARANTINE_REASONS, RECOVERY_REASONS } from '../queue/damage.ts';
import {
  PASSWORD,
  PLAIN_LISTENER,
  RawSmtpClient,
  type SmtpSink,
  startDnsServer,
  startSmtpSink,
  startTestRelay,
  type TestDnsServer,
  type TestRelay,
  waitFor,
} from '../testing/index.ts';
import { type Scrape, scrapeMetrics } from '../testing/metrics-scrape.ts';
import { PROCESS_METRIC_PREFIXES, relayMetricsRegistry } from './catalogue.ts';
import { RelayMetrics } from './metrics.ts';
import { REASONS } from './reasons.ts';

const CATALOGUE = new URL('../../../docs/reference/relay-metrics.md', import.meta.url);
const relayMetricDocs = () => metricDocs(relayMetricsRegistry());
/** Label names that would put a user, an address or an IP into a series. */
const FORBIDDEN_LABELS = ['user', 'username', 'ip', 'client_ip', 'address', 'sender', 'recipient'];

describe('metrics catalogue', () => {
  let dns: TestDnsServer;
  let sink: SmtpSink;
  let relay: TestRelay;
  let scrape: Scrape;

  before(async () => {
    dns = await startDnsServer();
    dns.setA('2.0.0.127.bl.test', ['127.0.0.2']); // 127.0.0.2 is listed, 127.0.0.1 is not
    sink = await startSmtpSink();
    relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        dnsbl: { enabled: true, resolvers: [dns.address], zones: [{ zone: 'bl.test' }] },
        delivery: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
      },
    });
    const client = await RawSmtpClient.connect(relay.port('plain'));
    await client.greeting();
    await client.ehlo();
    await client.command('BOGUS'); // protocol_error
    await client.authPlain('alice', 'wrong password'); // auth_failed
    await client.authPlain('alice', PASSWORD);
    await client.sendRaw('alice@sender.test', ['bob@one.test'], 'Subject: hi\r\n\r\nhello\r\n');
    await client.sendRaw(
      'alice@sender.test',
      ['bob@one.test'],
      'Content-Type: application/octet-stream; name="a.exe"\r\n\r\nMZ\r\n',
    );
    await client.quit();
    const listed = await RawSmtpClient.connect(relay.port('plain'), { localAddress: '127.0.0.2' });
    assert.equal((await listed.greeting()).code, 554);
    await sink.waitForMessages(1);
    await waitFor('delivered', () => relay.relay.delivery?.size === 0);
    scrape = await scrapeMetrics(relay.relay.adminPort);
  });
  after(async () => {
    await relay.close();
    await sink.close();
    await dns.close();
  });

  it('lists exactly the metrics /metrics exposes, with their type, help and labels', async () => {
    const catalogue = parseMetricsTable(await readFile(CATALOGUE, 'utf8'));
    const exposed = [...scrape.families.values()];
    assert.deepEqual(
      exposed.map((f) => f.name).sort(),
      catalogue.map((d) => d.name).sort(),
      'docs/reference/relay-metrics.md (make generate) vs /metrics',
    );
    for (const family of exposed) {
      const doc = catalogue.find((d) => d.name === family.name);
      assert.equal(family.type, doc?.type, `${family.name} type`);
      assert.equal(family.help, doc?.help, `${family.name} help`);
      for (const sample of family.samples) {
        const labels = Object.keys(sample.labels).filter((l) => l !== 'le');
        assert.deepEqual(labels.sort(), [...(doc?.labels ?? [])].sort(), `${sample.name} labels`);
      }
    }
    // the traffic reached the families the issue names, so the comparison saw real series
    for (const name of [
      'sluice_smtp_messages_total',
      'sluice_smtp_auth_total',
      'sluice_dnsbl_lookups_total',
      'sluice_delivery_attempts_total',
    ]) {
      assert.ok((scrape.families.get(name)?.samples.length ?? 0) > 0, `${name} has samples`);
    }
  });

  it('gives every reason label a value from a closed list (REASONS; the queue damage reasons)', () => {
    const seen = new Set(scrape.samples().flatMap((s) => (s.labels.reason ? [s.labels.reason] : [])));
    for (const reason of ['accepted', 'auth_failed', 'blocked_attachment', 'protocol_error', 'dnsbl_listed'])
      assert.ok(seen.has(reason), `reason ${reason} seen`);
    const known = new Set<string>([...REASONS, ...QUARANTINE_REASONS, ...RECOVERY_REASONS]);
    assert.deepEqual(
      [...seen].filter((r) => !known.has(r)),
      [],
    );
  });

  it('has no label that carries a user, an address or an IP', () => {
    const registered = relayMetricDocs().flatMap((d) => d.labels.map((l) => `${d.name}{${l}}`));
    assert.deepEqual(
      registered.filter((l) => FORBIDDEN_LABELS.some((f) => l.endsWith(`{${f}}`))),
      [],
    );
    const scraped = scrape.samples().flatMap((s) => Object.keys(s.labels));
    assert.deepEqual(
      scraped.filter((l) => FORBIDDEN_LABELS.includes(l)),
      [],
    );
  });

  it('leaves out only the process metrics the reference names as a group', () => {
    const catalogued = new Set(relayMetricDocs().map((d) => d.name));
    const withProcess = new RelayMetrics({ defaultMetrics: true }).registry.getMetricsAsArray();
    const extra = withProcess.map((m) => m.name).filter((n) => !catalogued.has(n));
    assert.ok(extra.length > 0, 'the process metrics are registered');
    assert.deepEqual(
      extra.filter((n) => !PROCESS_METRIC_PREFIXES.some((p) => n.startsWith(p))),
      [],
    );
  });
});
