// Scenario 2 on the real node: mail from a client outside the pod network (the host)
// through the relay policy's SMTP Service (a ClusterIP: kube-proxy picks the pod),
// delivered to a sink found through cluster DNS (CoreDNS serves example.net's MX
// record); and the policy's refusals (recipients, size, attachment, DNSBL) hold. The
// DNSBL zone is served by CoreDNS too, and lists one of two client addresses.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type SinkMessage, type SmtpSink, startSmtpSink, waitFor } from '@sluice/relay/testing';
import { connectRaw, type Endpoint, mailer, type SmtpError } from '../smtp-clients.ts';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import { installSluice, NAMESPACE, relayResources, USERS, waitPolicyReady } from './sluice-on-node.ts';

const skip = skipUnlessNodeBuilt();
const DOMAIN = 'example.net';
const DNSBL_ZONE = 'bl.sluice.test';
const FROM = 'alice@example.com';
const QUEUED = /^250 2\.0\.0 Ok: queued as (\S+)/;
const alice = USERS[0] as (typeof USERS)[number];

function zone(origin: string, records: string[]): string {
  return [
    `$ORIGIN ${origin}.`,
    `@ 5 IN SOA ns.${origin}. hostmaster.${origin}. 1 60 60 600 5`,
    `@ 5 IN NS ns.${origin}.`,
    ...records,
    '',
  ].join('\n');
}

async function refusal(send: () => Promise<unknown>): Promise<SmtpError> {
  try {
    await send();
  } catch (err: unknown) {
    return err as SmtpError;
  }
  throw new Error('the message was accepted');
}

describe('scenario 2 on the real node: mail through the Service to a sink found by MX', { skip }, () => {
  let cluster: NodeCluster;
  let sink: SmtpSink;
  let service: Endpoint;
  let listed: string;
  let unlisted: string;
  const bySubject = (subject: string): SinkMessage | undefined =>
    sink.messages.find((m) => m.raw.toString('utf8').includes(`Subject: ${subject}\r\n`));

  before(async () => {
    cluster = await startNodeCluster();
    listed = await cluster.addClientAddress(1);
    unlisted = await cluster.addClientAddress(2);
    sink = await startSmtpSink({ host: cluster.nodeIp });
    const reversed = listed.split('.').reverse().join('.');
    await installSluice(cluster, {
      dns: {
        zones: {
          [DOMAIN]: zone(DOMAIN, [
            `@ 5 IN MX 10 mx.${DOMAIN}.`,
            `mx 5 IN A ${cluster.nodeIp}`,
            'ns 5 IN A 192.0.2.53',
          ]),
          [DNSBL_ZONE]: zone(DNSBL_ZONE, [`${reversed} 5 IN A 127.0.0.2`, 'ns 5 IN A 192.0.2.53']),
        },
      },
    });
    await cluster.cp.kubectl(['create', 'namespace', NAMESPACE]);
    await cluster.cp.kubectl(['apply', '-f', '-'], {
      input: relayResources({
        dnsbl: {
          checkAt: 'connect',
          resolvers: [cluster.dnsIp],
          timeoutMs: 2000,
          zones: [
            {
              zone: DNSBL_ZONE,
              listedCodes: ['127.0.0.2'],
              message: 'Client host [{ip}] is listed in {zone}',
            },
          ],
        },
        delivery: {
          mode: 'direct',
          port: sink.port,
          resolvers: [cluster.dnsIp],
          allowLocalAddresses: true,
          retry: { minBackoffSeconds: 1, maxBackoffSeconds: 2 },
        },
      }),
    });
    await waitPolicyReady(cluster);
    const { stdout } = await cluster.cp.kubectl([
      'get',
      'service',
      '-n',
      NAMESPACE,
      '-l',
      'app.kubernetes.io/managed-by=sluice-operator',
      '-o',
      'jsonpath={range .items[?(@.spec.clusterIP!="None")]}{.metadata.name} {.spec.clusterIP} {.spec.ports[?(@.name=="submission")].port}{"\\n"}{end}',
    ]);
    const line = stdout.split('\n').find((l) => / \d+$/.test(l.trim()));
    const [, host, port] = line?.trim().split(' ') ?? [];
    assert.ok(host && port, `the SMTP Service's ClusterIP: ${stdout}`);
    service = { host, port: Number(port) };
  });
  after(async () => {
    await cluster?.stop();
    await sink?.close();
  });

  test('a message sent to the Service ClusterIP is delivered to the MX host found through cluster DNS', async () => {
    const info = await mailer(service, alice.username, alice.password).sendMail({
      from: FROM,
      to: `bob@${DOMAIN}`,
      subject: 'through the Service',
      text: 'Hello through kube-proxy',
    });
    assert.match(info.response, QUEUED);
    await waitFor(() => bySubject('through the Service') !== undefined, 'the message at the sink', 60_000);
    const delivered = bySubject('through the Service') as SinkMessage;
    assert.equal(delivered.sender, FROM);
    assert.deepEqual(delivered.recipients, [`bob@${DOMAIN}`]);
    assert.match(delivered.raw.toString('utf8'), /Hello through kube-proxy/);
  });

  test('takes the first 30 recipients and answers the 31st with 452 4.5.3', async () => {
    const to = Array.from({ length: 31 }, (_, i) => `r${i + 1}@${DOMAIN}`);
    const info = await mailer(service, alice.username, alice.password).sendMail({
      from: FROM,
      to,
      subject: '31 recipients',
      text: 'to many',
    });
    assert.equal(info.accepted.length, 30);
    assert.deepEqual(info.rejected, [`r31@${DOMAIN}`]);
    const rejected = (info as { rejectedErrors?: SmtpError[] }).rejectedErrors?.[0];
    assert.match(rejected?.response ?? '', /^452 4\.5\.3 Too many recipients, at most 30 per message/);
    await waitFor(() => bySubject('31 recipients') !== undefined, 'the message at the sink', 60_000);
    assert.deepEqual(
      [...(bySubject('31 recipients') as SinkMessage).recipients].sort(),
      to.slice(0, 30).sort(),
    );
  });

  test('refuses a declared 31 MiB message with 552 5.3.4 and a .exe attachment with 550 5.7.1', async () => {
    const client = await connectRaw(service);
    await client.greeting();
    await client.ehlo();
    await client.starttls();
    assert.equal((await client.authPlain(alice.username, alice.password)).code, 235);
    const mail = await client.command(`MAIL FROM:<${FROM}> SIZE=${31 * 1024 * 1024}`);
    assert.equal(mail.code, 552);
    assert.match(mail.text, /^5\.3\.4 /);
    await client.quit();

    const err = await refusal(() =>
      mailer(service, alice.username, alice.password).sendMail({
        from: FROM,
        to: `bob@${DOMAIN}`,
        subject: 'invoice',
        text: 'see attachment',
        attachments: [{ filename: 'invoice.exe', content: Buffer.from('MZ\x90\x00not really a program') }],
      }),
    );
    assert.equal(err.responseCode, 550, err.message);
    assert.match(
      err.response ?? '',
      /^550 5\.7\.1 Attachment "invoice\.exe" refused: \.exe files are not allowed/,
    );
  });

  test('a client address listed in the DNSBL zone (served by cluster DNS) gets 554 5.7.1, another 220', async () => {
    // kube-proxy keeps the client's source address (it is in the cluster CIDR): the relay sees it
    const refused = await connectRaw(service, { localAddress: listed });
    const greeting = await refused.greeting();
    assert.equal(greeting.code, 554);
    assert.equal(greeting.text, `5.7.1 Client host [${listed}] is listed in ${DNSBL_ZONE}`);
    await refused.waitClosed();
    const served = await connectRaw(service, { localAddress: unlisted });
    assert.equal((await served.greeting()).code, 220);
    await served.quit();
  });
});
