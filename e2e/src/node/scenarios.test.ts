// The product on the real node, one cluster for all scenarios (issue order in the names,
// run in the order that lets one policy go through a cluster's life):
//
//  9. (issue 23) The chart installed as the previous release (0.1.0's CRDs, images tagged
//     0.1.0), a policy without spec.image Ready on it, then the documented upgrade (the
//     CRDs applied server-side, `helm upgrade`) under steady load through the Service:
//     the operator and both relay pods roll to the new images, status names the new
//     relay image and the operator's version, every accepted message is delivered once.
//  1. The chart (`helm install`, upgraded by 9) runs the operator in-cluster from its image under the chart's
//     ServiceAccount (the API server enforces OwnerReferencesPermissionEnforcement and
//     NodeRestriction); a two-replica RelayPolicy and its SmtpUsers become Ready.
//  2. Mail from a client outside the pod network (the host) through the policy's SMTP
//     Service (a ClusterIP: kube-proxy picks the pod), delivered to a sink found through
//     cluster DNS and MX records; the policy's refusals (recipients, size, attachment,
//     DNSBL served by CoreDNS) hold.
//  4. A password change and a suspension reach both relays through the kubelet's real
//     Secret volume updates; the measured delay is reported.
//  5. A relay container killed with SIGKILL: the kubelet restarts it and the mail queued
//     in its spool is delivered, once.
//  3. A rolling update (a new image tag: an upgrade) under steady load through the
//     Service: no connection refused or reset, no message lost or doubled.
//  7. Autoscaling switched on for a policy running 3 replicas: the StatefulSet never asks
//     for fewer pods than it runs, ready pods never fall below the minimum; idle, the HPA
//     (reading pod CPU from metrics-server) keeps 3; under SMTP load through the Service
//     it scales out and the new pods become Ready; every message is delivered once.
//  6. Scale 3 → 1 with mail queued for an unreachable destination: `kubectl sluice queue
//     list` shows it on each pod through the pod proxy; the stopping relays hand their
//     queues over and every message is delivered once.
//  8. The spool size grown on a StorageClass without expansion: the policy says so with
//     SpoolExpansionFailed, keeps serving, and a later change still applies.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, afterEach, before, describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { OPERATOR_VERSION } from '@sluice/operator/version';
import { type SinkMessage, type SmtpSink, startSmtpSink } from '@sluice/relay/testing';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { authReply, connectRaw, type Endpoint, mailer, type SmtpError } from '../smtp-clients.ts';
import { skipUnlessNodeBuilt } from './binaries.ts';
import { type NodeCluster, startNodeCluster } from './cluster.ts';
import {
  installSluice,
  NAMESPACE,
  OPERATOR_IMAGE,
  POLICY,
  type PolicyStatus,
  PREVIOUS_OPERATOR_IMAGE,
  PREVIOUS_RELAY_IMAGE,
  RELAY_IMAGE,
  RELEASE,
  RELEASE_NAMESPACE,
  relayResources,
  USERS,
  upgradeSluice,
  waitPolicyReady,
} from './sluice-on-node.ts';

const skip = skipUnlessNodeBuilt();
const DOMAIN = 'example.net';
/** MX on a host address where nothing listens until scenario 5 starts a sink there. */
const LATER = 'later.test';
/** MX on a host address where nothing listens until scenario 6 starts a sink there. */
const HELD = 'held.test';
const DNSBL_ZONE = 'bl.sluice.test';
const FROM = 'alice@example.com';
const QUEUED = /^250 2\.0\.0 Ok: queued as (\S+)/;
/** The `kubectl sluice` plugin, run as an admin runs it */
const PLUGIN = fileURLToPath(import.meta.resolve('@sluice/operator/kubectl-sluice'));
const STATEFULSET = `${POLICY}-relay`;
const SUBMISSION = 587;
const ADMIN_PORT = 9587;
const NEXT_RELAY_IMAGE = 'sluice.test/relay:next';
const alice = { ...(USERS[0] as (typeof USERS)[number]) };
const bob = USERS[1] as (typeof USERS)[number];

function zone(origin: string, records: string[]): string {
  return [
    `$ORIGIN ${origin}.`,
    `@ 5 IN SOA ns.${origin}. hostmaster.${origin}. 1 60 60 600 5`,
    `@ 5 IN NS ns.${origin}.`,
    ...records,
    '',
  ].join('\n');
}

function mxZone(origin: string, address: string): string {
  return zone(origin, [`@ 5 IN MX 10 mx.${origin}.`, `mx 5 IN A ${address}`, 'ns 5 IN A 192.0.2.53']);
}

async function refusal(send: () => Promise<unknown>): Promise<SmtpError> {
  try {
    await send();
  } catch (err: unknown) {
    return err as SmtpError;
  }
  throw new Error('the message was accepted');
}

const withSubject = (sink: SmtpSink, subject: string): SinkMessage[] =>
  sink.messages.filter((m) => m.raw.toString('utf8').includes(`Subject: ${subject}\r\n`));

interface Pod {
  name: string;
  uid: string;
  ip: string;
  ready: boolean;
  restartCount: number;
  containerId: string;
  lastTerminated?: { exitCode: number; reason?: string };
}

describe('Sluice on the real node', { skip }, () => {
  let cluster: NodeCluster;
  let sink: SmtpSink;
  const extraSinks: SmtpSink[] = [];
  let service: Endpoint;
  let listed: string;
  let unlisted: string;
  let laterHost: string;
  let heldHost: string;

  const kubectl = (args: string[], input?: string) =>
    cluster.cp.kubectl(args, input === undefined ? {} : { input });
  const getJson = async <T>(args: string[]): Promise<T> =>
    JSON.parse((await kubectl(['get', ...args, '-o', 'json'])).stdout) as T;
  const patchPolicy = (patch: object) =>
    kubectl(['patch', 'relaypolicy', POLICY, '-n', NAMESPACE, '--type=merge', '-p', JSON.stringify(patch)]);

  interface PodJson {
    metadata: { name: string; uid: string; deletionTimestamp?: string };
    status: {
      podIP?: string;
      conditions?: { type: string; status: string }[];
      containerStatuses?: {
        restartCount: number;
        containerID?: string;
        lastState?: { terminated?: { exitCode: number; reason?: string } };
      }[];
    };
  }
  const relayPods = async (withStopping = false): Promise<Pod[]> => {
    const list = await getJson<{ items: PodJson[] }>([
      'pods',
      '-n',
      NAMESPACE,
      '-l',
      `app.kubernetes.io/instance=${POLICY}`,
    ]);
    return list.items
      .filter((p) => withStopping || !p.metadata.deletionTimestamp)
      .map((p) => {
        const c = p.status.containerStatuses?.[0];
        return {
          name: p.metadata.name,
          uid: p.metadata.uid,
          ip: p.status.podIP ?? '',
          ready: p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ?? false,
          restartCount: c?.restartCount ?? 0,
          containerId: (c?.containerID ?? '').replace(/^containerd:\/\//, ''),
          ...(c?.lastState?.terminated ? { lastTerminated: c.lastState.terminated } : {}),
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  };
  const allPods = async (): Promise<string> =>
    (await kubectl(['get', 'pods,pvc,statefulset,hpa', '-n', NAMESPACE, '-o', 'wide'])).stdout;
  /** Pods, as the StatefulSet sees them: all of `names`, each Ready, and no other. */
  const waitRelayPods = async (names: string[], what: string, timeoutMs = 240_000) => {
    try {
      await waitFor(
        what,
        async () => {
          const pods = await relayPods();
          return pods.length === names.length && pods.every((p, i) => p.name === names[i] && p.ready);
        },
        { timeoutMs: timeoutMs, intervalMs: 1000 },
      );
    } catch (err: unknown) {
      throw new Error(`${(err as Error).message}\n${await allPods()}`);
    }
  };
  const at = (pod: Pod): Endpoint => ({ host: pod.ip, port: SUBMISSION });
  const send = async (to: Endpoint, rcpt: string, subject: string) => {
    const info = await mailer(to, alice.username, alice.password).sendMail({
      from: FROM,
      to: rcpt,
      subject,
      text: `${subject}\n`,
    });
    assert.match(info.response, QUEUED, subject);
    return QUEUED.exec(info.response)?.[1] as string;
  };
  /** The policy's SMTP Service (its ClusterIP, not the headless one) and submission port. */
  const smtpService = async (): Promise<Endpoint> => {
    const { stdout } = await kubectl([
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
    return { host, port: Number(port) };
  };
  /** The steady loads send hundreds of messages as alice. */
  const loadRateLimits = {
    perUser: [
      { what: 'messages', limit: 100_000, windowSeconds: 3600 },
      { what: 'recipients', limit: 100_000, windowSeconds: 86400 },
    ],
  };
  /** Delivery straight to the MX hosts that cluster DNS names, quick retries. */
  const delivery = () => ({
    mode: 'direct',
    port: sink.port,
    resolvers: [cluster.dnsIp],
    allowLocalAddresses: true,
    retry: { minBackoffSeconds: 1, maxBackoffSeconds: 2 },
  });
  /**
   * The SMTP Service once it answers 220 through its ClusterIP. Pods Ready (the policy's
   * Ready condition) is not enough: kube-proxy programs the Service's endpoints a moment
   * later, and until then a connection to the ClusterIP is refused (seen in CI: the first
   * second of scenario 9's load).
   */
  const answeringSmtpService = async (): Promise<Endpoint> => {
    const endpoint = await smtpService();
    await waitFor(
      'the SMTP Service answering 220 through its ClusterIP',
      async () => {
        try {
          const client = await connectRaw(endpoint);
          const greeting = await client.greeting();
          await client.quit();
          return greeting.code === 220;
        } catch {
          return false;
        }
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    return endpoint;
  };
  /** The policy's settings besides the image (the upgrade starts without one). */
  const policySpec = () => ({
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
    rateLimits: loadRateLimits,
    delivery: delivery(),
  });
  /** Each relay pod's name and the image its container runs, sorted by name. */
  const relayImages = async (): Promise<string[]> => {
    const { stdout } = await kubectl([
      'get',
      'pods',
      '-n',
      NAMESPACE,
      '-l',
      `app.kubernetes.io/instance=${POLICY}`,
      '-o',
      'jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image}{"\\n"}{end}',
    ]);
    return stdout.trim().split('\n').sort();
  };
  /**
   * Clients sending through the Service: `workers` loops, each a new authenticated session
   * per message, `pauseMs` between messages. What was accepted and what failed is kept.
   */
  const steadyLoad = (prefix: string, workers: number, pauseMs: number) => {
    const sent: string[] = [];
    const failures: string[] = [];
    let stopped = false;
    let running: Promise<void>[] = [];
    const worker = async (w: number) => {
      for (let i = 0; !stopped; i++) {
        const subject = `${prefix} ${w}-${i}`;
        try {
          await send(service, `load@${DOMAIN}`, subject);
          sent.push(subject);
        } catch (err: unknown) {
          failures.push(`${subject}: ${(err as Error).message}`);
        }
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
    };
    return {
      sent,
      failures,
      start() {
        running = Array.from({ length: workers }, (_, w) => worker(w + 1));
      },
      async stop() {
        stopped = true;
        await Promise.all(running);
      },
    };
  };
  const exactlyOnce = async (at: SmtpSink, subjects: string[], timeoutMs = 120_000) => {
    // one pass over the sink per look (the loads deliver thousands of messages)
    const counts = () => {
      const count = new Map<string, number>();
      for (const m of at.messages) {
        const subject = /\r\nSubject: ([^\r]*)\r\n/.exec(`\r\n${m.raw.toString('utf8')}`)?.[1];
        if (subject !== undefined) count.set(subject, (count.get(subject) ?? 0) + 1);
      }
      return count;
    };
    await waitFor(
      `${subjects.length} messages at ${at.host}`,
      () => {
        const count = counts();
        return subjects.every((s) => (count.get(s) ?? 0) > 0);
      },
      { timeoutMs: timeoutMs, intervalMs: 500 },
    );
    const count = counts();
    for (const s of subjects) assert.equal(count.get(s), 1, `${s} delivered once`);
  };

  before(async () => {
    cluster = await startNodeCluster();
    listed = await cluster.addClientAddress(1);
    unlisted = await cluster.addClientAddress(2);
    laterHost = await cluster.addClientAddress(3);
    heldHost = await cluster.addClientAddress(4);
    sink = await startSmtpSink({ host: cluster.nodeIp });
    const reversed = listed.split('.').reverse().join('.');
    await installSluice(cluster, {
      previousRelease: true,
      // up to four relay pods (scenario 7's scale-out), each with its spool claim
      volumes: 4,
      dns: {
        zones: {
          [DOMAIN]: mxZone(DOMAIN, cluster.nodeIp),
          [LATER]: mxZone(LATER, laterHost),
          [HELD]: mxZone(HELD, heldHost),
          [DNSBL_ZONE]: zone(DNSBL_ZONE, [`${reversed} 5 IN A 127.0.0.2`, 'ns 5 IN A 192.0.2.53']),
        },
      },
    });
  });
  // a scenario that failed says what the cluster looked like: the scenarios share one
  // cluster, and a later one failing may have its cause in an earlier one
  afterEach(async (context) => {
    // TestContext.passed (Node 21.7 and later) is not in @types/node yet
    const t = context as TestContext & { passed?: boolean };
    if (t.passed !== false || !cluster) return;
    const show = async (args: string[], lastLines = 80) => {
      const { stdout } = await kubectl(args).catch((err: unknown) => ({ stdout: String(err) }));
      return `$ kubectl ${args.join(' ')}\n${stdout.trimEnd().split('\n').slice(-lastLines).join('\n')}`;
    };
    const parts = [
      await show(['get', 'pods,pvc,statefulset,hpa', '-A', '-o', 'wide']),
      await show(['get', 'relaypolicy', POLICY, '-n', NAMESPACE, '-o', 'jsonpath={.status}']),
      await show(['get', 'events', '-A', '--sort-by=.lastTimestamp'], 40),
      await show(['logs', '-n', RELEASE_NAMESPACE, `deployment/${RELEASE}-operator`, '--tail=60']),
    ];
    t.diagnostic(`after the failure of "${t.name}":\n${parts.join('\n')}`);
  });
  after(async () => {
    await cluster?.stop();
    await sink?.close();
    for (const s of extraSinks) await s.close();
  });

  describe('scenario 9 (issue 23): the chart upgraded from the previous release under load', () => {
    test('helm upgrade with the documented CRD step rolls the relays to the new release; every accepted message is delivered once', async (t) => {
      const { stdout: operatorBefore } = await kubectl([
        'get',
        'deployment',
        `${RELEASE}-operator`,
        '-n',
        RELEASE_NAMESPACE,
        '-o',
        'jsonpath={.spec.template.spec.containers[0].image}',
      ]);
      assert.equal(operatorBefore, PREVIOUS_OPERATOR_IMAGE);
      await kubectl(['create', 'namespace', NAMESPACE]);
      // no spec.image: the policy follows the operator's release (the 0.1.0 CRD writes
      // its own default into it, which the operator treats as unset)
      await kubectl(['apply', '-f', '-'], relayResources({ ...policySpec(), image: undefined }));
      const stored = await getJson<{ spec: { image?: string } }>(['relaypolicy', POLICY, '-n', NAMESPACE]);
      assert.equal(stored.spec.image, 'ghcr.io/sluice-dev/relay:0.1.0', 'the 0.1.0 CRD wrote its default');
      await waitPolicyReady(cluster);
      assert.deepEqual(await relayImages(), [
        `relay-relay-0 ${PREVIOUS_RELAY_IMAGE}`,
        `relay-relay-1 ${PREVIOUS_RELAY_IMAGE}`,
      ]);
      service = await answeringSmtpService();
      const before = await relayPods();

      const load = steadyLoad('upgrade', 2, 100);
      load.start();
      let crdStep = '';
      try {
        await waitFor('the load running', () => load.sent.length >= 10 || load.failures.length > 0, {
          timeoutMs: 60_000,
          intervalMs: 500,
        });
        crdStep = await upgradeSluice(cluster);
        await waitFor(
          'both relay pods replaced, Ready, and the new relay image in status',
          async () => {
            if (load.failures.length > 0) return true; // the assertions after the wait report it
            const pods = await relayPods();
            const status = await getJson<{ status?: PolicyStatus }>(['relaypolicy', POLICY, '-n', NAMESPACE]);
            return (
              pods.length === 2 &&
              pods.every((p) => p.ready && !before.some((b) => b.uid === p.uid)) &&
              status.status?.relayImage === RELAY_IMAGE
            );
          },
          { timeoutMs: 300_000, intervalMs: 1000 },
        ).catch(async (err: unknown) => {
          throw new Error(
            `${(err as Error).message}\nfailures: ${load.failures.join('\n')}\n${await allPods()}`,
          );
        });
        const atUpgrade = load.sent.length;
        await waitFor(
          'load after the upgrade',
          () => load.sent.length >= atUpgrade + 10 || load.failures.length > 0,
          { timeoutMs: 60_000, intervalMs: 500 },
        );
      } finally {
        await load.stop();
      }
      t.diagnostic(`${load.sent.length} messages sent through the upgrade`);
      assert.match(crdStep, /relaypolicies\.sluice\.dev serverside-applied/);
      assert.deepEqual(load.failures, []);
      assert.deepEqual(await relayImages(), [`relay-relay-0 ${RELAY_IMAGE}`, `relay-relay-1 ${RELAY_IMAGE}`]);
      const status = (await getJson<{ status: PolicyStatus }>(['relaypolicy', POLICY, '-n', NAMESPACE]))
        .status;
      assert.equal(status.operatorVersion, OPERATOR_VERSION);
      assert.equal(status.relayImage, RELAY_IMAGE);
      const { stdout: operatorAfter } = await kubectl([
        'get',
        'deployment',
        `${RELEASE}-operator`,
        '-n',
        RELEASE_NAMESPACE,
        '-o',
        'jsonpath={.spec.template.spec.containers[0].image}',
      ]);
      assert.equal(operatorAfter, OPERATOR_IMAGE);
      await exactlyOnce(sink, load.sent);
    });
  });

  describe('scenario 1: helm install, the operator in-cluster, a policy Ready', () => {
    test('the operator runs from its image as the chart ServiceAccount; two relay pods make the policy Ready', async () => {
      const { stdout: operatorPod } = await kubectl([
        'get',
        'pods',
        '-n',
        RELEASE_NAMESPACE,
        '-o',
        'jsonpath={range .items[*]}{.spec.serviceAccountName} {.spec.containers[0].image} {.status.phase}{"\\n"}{end}',
      ]);
      assert.match(operatorPod, new RegExp(`^${RELEASE}-operator sluice\\.test/operator:dev Running$`, 'm'));

      // the policy of scenario 9, now pinned to the image it runs: nothing rolls
      await kubectl(['apply', '-f', '-'], relayResources(policySpec()));
      const status = await waitPolicyReady(cluster);
      const readyCondition = status.conditions?.find((c) => c.type === 'Ready');
      assert.equal(readyCondition?.reason, 'PodsReady');
      assert.match(readyCondition?.message ?? '', /2 of 2 relay pods ready/);
      assert.equal(status.readyReplicas, 2);
      assert.equal(status.userCount, 2);

      const { stdout: pods } = await kubectl([
        'get',
        'pods',
        '-n',
        NAMESPACE,
        '-o',
        'jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{"\\n"}{end}',
      ]);
      assert.deepEqual(pods.trim().split('\n').sort(), [
        'relay-relay-0 sluice.test/relay:dev Running',
        'relay-relay-1 sluice.test/relay:dev Running',
      ]);
      const { stdout: claims } = await kubectl([
        'get',
        'pvc',
        '-n',
        NAMESPACE,
        '-o',
        'jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}',
      ]);
      assert.deepEqual(claims.trim().split(' ').sort(), [
        'spool-relay-relay-0=Bound',
        'spool-relay-relay-1=Bound',
      ]);
      for (const user of USERS) {
        const { stdout } = await kubectl([
          'get',
          'smtpuser',
          user.name,
          '-n',
          NAMESPACE,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        assert.equal(stdout, 'True', `SmtpUser ${user.name} Ready`);
      }

      service = await answeringSmtpService();
    });
  });

  describe('scenario 2: mail through the Service to a sink found by MX, and the refusals', () => {
    test('a message sent to the Service ClusterIP is delivered to the MX host found through cluster DNS', async () => {
      const info = await mailer(service, alice.username, alice.password).sendMail({
        from: FROM,
        to: `bob@${DOMAIN}`,
        subject: 'through the Service',
        text: 'Hello through kube-proxy',
      });
      assert.match(info.response, QUEUED);
      await waitFor('the message at the sink', () => withSubject(sink, 'through the Service').length > 0, {
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      const delivered = withSubject(sink, 'through the Service')[0] as SinkMessage;
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
      await waitFor('the message at the sink', () => withSubject(sink, '31 recipients').length > 0, {
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      assert.deepEqual(
        [...(withSubject(sink, '31 recipients')[0] as SinkMessage).recipients].sort(),
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

  describe('scenario 4: password change and suspension through Secret volume updates', () => {
    /** The relay's count of applied config and users file reloads, from its admin port. */
    const reloads = async (pod: Pod): Promise<number> => {
      const text = await (await fetch(`http://${pod.ip}:${ADMIN_PORT}/metrics`)).text();
      const m = /^sluice_config_reloads_total\{result="applied"\} (\d+)$/m.exec(text);
      return Number(m?.[1] ?? 0);
    };
    /**
     * Seconds from `since` until each relay pod answers this AUTH with `code` and `text`.
     * AUTH is tried once after each users file reload the pod reports, never in a loop:
     * failed attempts would lock the user out (auth lockout) before the file arrives.
     */
    const delayUntilEveryPod = async (
      username: string,
      password: string,
      code: number,
      text: RegExp,
      since: number,
      seenBefore: Map<string, number>,
    ): Promise<Record<string, number>> => {
      const pods = await relayPods();
      assert.equal(pods.length, 2);
      const delays: Record<string, number> = {};
      const replies: string[] = [];
      await waitFor(
        `AUTH ${username} answered ${code} by every relay pod`,
        async () => {
          for (const pod of pods) {
            if (delays[pod.name] !== undefined) continue;
            const now = await reloads(pod);
            if (now === seenBefore.get(pod.name)) continue;
            seenBefore.set(pod.name, now);
            const reply = await authReply(at(pod), username, password);
            replies.push(`${pod.name}: ${reply.code} ${reply.text}`);
            if (reply.code === code && text.test(reply.text))
              delays[pod.name] = Math.round((Date.now() - since) / 100) / 10;
          }
          return Object.keys(delays).length === pods.length;
        },
        { timeoutMs: 240_000, intervalMs: 500, detail: () => `after reloads: ${replies.join('; ')}` },
      );
      return delays;
    };
    const reloadsNow = async () => {
      const seen = new Map<string, number>();
      for (const pod of await relayPods()) seen.set(pod.name, await reloads(pod));
      return seen;
    };

    test('a changed password Secret: the new password works on every relay, the old one gets 535 5.7.8', async (t) => {
      for (const pod of await relayPods())
        assert.equal((await authReply(at(pod), alice.username, alice.password)).code, 235);
      const seen = await reloadsNow();
      const old = alice.password;
      const setPassword = (password: string) =>
        kubectl([
          'patch',
          'secret',
          'alice-password',
          '-n',
          NAMESPACE,
          '--type=merge',
          '-p',
          JSON.stringify({ stringData: { password } }),
        ]);
      alice.password = 'alice-password-2';
      const since = Date.now();
      try {
        await setPassword(alice.password);
        const delays = await delayUntilEveryPod(alice.username, alice.password, 235, /./, since, seen);
        t.diagnostic(`password change reached the relays after ${JSON.stringify(delays)} seconds`);
        for (const pod of await relayPods()) {
          const reply = await authReply(at(pod), alice.username, old);
          assert.equal(reply.code, 535);
          assert.equal(reply.text, '5.7.8 Authentication credentials invalid');
        }
      } catch (err: unknown) {
        // the later scenarios log in as alice: her old password back, so one failure stays one
        alice.password = old;
        await setPassword(old).catch(() => undefined);
        throw err;
      }
    });

    test('a suspended SmtpUser: every relay answers its AUTH with 535 5.7.8 account suspended', async (t) => {
      for (const pod of await relayPods())
        assert.equal((await authReply(at(pod), bob.username, bob.password)).code, 235);
      const seen = await reloadsNow();
      const since = Date.now();
      await kubectl([
        'patch',
        'smtpuser',
        bob.name,
        '-n',
        NAMESPACE,
        '--type=merge',
        '-p',
        '{"spec":{"suspended":true}}',
      ]);
      const delays = await delayUntilEveryPod(
        bob.username,
        bob.password,
        535,
        /^5\.7\.8 Authentication credentials invalid: account suspended$/,
        since,
        seen,
      );
      t.diagnostic(`suspension reached the relays after ${JSON.stringify(delays)} seconds`);
      const { stdout } = await kubectl([
        'get',
        'smtpuser',
        bob.name,
        '-n',
        NAMESPACE,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].reason}',
      ]);
      assert.equal(stdout, 'Suspended');
    });
  });

  describe('scenario 5: a relay container killed with SIGKILL', () => {
    test('the kubelet restarts it and the mail queued in its spool is delivered once', async () => {
      const [victim] = await relayPods();
      assert.ok(victim?.containerId, 'relay-0 has a container');
      const subjects = [1, 2, 3].map((i) => `queued before SIGKILL ${i}`);
      // nothing listens at later.test's MX yet: the relay keeps them queued
      for (const s of subjects) await send(at(victim), `someone@${LATER}`, s);
      await cluster.containerd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', victim.containerId]);
      await waitFor(
        `${victim.name} restarted by the kubelet and Ready`,
        async () => {
          const pod = (await relayPods()).find((p) => p.name === victim.name);
          return pod !== undefined && pod.restartCount > victim.restartCount && pod.ready;
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      );
      const restarted = (await relayPods()).find((p) => p.name === victim.name) as Pod;
      assert.equal(restarted.uid, victim.uid, 'the same pod, its container restarted');
      assert.equal(restarted.lastTerminated?.exitCode, 137, JSON.stringify(restarted.lastTerminated));
      const later = await startSmtpSink({ host: laterHost, port: sink.port });
      extraSinks.push(later);
      await exactlyOnce(later, subjects);
    });
  });

  describe('scenario 3: rolling update under steady load', () => {
    test('an image upgrade rolls both pods while clients send through the Service: nothing refused, lost or doubled', async (t) => {
      const before = await relayPods();
      // a steady rate (about 10 messages a second from both), not a flood of a shared machine
      const load = steadyLoad('steady', 2, 100);
      const { sent, failures } = load;
      load.start();
      try {
        await waitFor('the load running', () => sent.length >= 10 || failures.length > 0, {
          timeoutMs: 60_000,
          intervalMs: 500,
        });
        // an upgrade: the same image under a new tag (containerd has it; nothing is pulled)
        await cluster.containerd.ctr(['images', 'tag', RELAY_IMAGE, NEXT_RELAY_IMAGE]);
        await patchPolicy({ spec: { image: NEXT_RELAY_IMAGE } });
        await waitFor(
          'both relay pods replaced and Ready',
          async () => {
            if (failures.length > 0) return true; // the assertions after the wait report it
            const pods = await relayPods();
            return pods.length === 2 && pods.every((p) => p.ready && !before.some((b) => b.uid === p.uid));
          },
          { timeoutMs: 300_000, intervalMs: 1000 },
        ).catch(async (err: unknown) => {
          throw new Error(`${(err as Error).message}\nfailures: ${failures.join('\n')}\n${await allPods()}`);
        });
        const atRollout = sent.length;
        await waitFor('load after the rollout', () => sent.length >= atRollout + 10 || failures.length > 0, {
          timeoutMs: 60_000,
          intervalMs: 500,
        });
      } finally {
        await load.stop();
      }
      t.diagnostic(`${sent.length} messages sent during the rollout`);
      assert.deepEqual(failures, []);
      await exactlyOnce(sink, sent);
      await waitPolicyReady(cluster);
    });
  });

  describe('scenario 7: autoscaling switched on at 3 replicas', () => {
    interface Sts {
      spec: { replicas?: number };
      status: { readyReplicas?: number };
    }
    interface Hpa {
      spec: { minReplicas: number; maxReplicas: number };
      status: {
        currentMetrics?: { resource?: { current?: { averageUtilization?: number } } }[];
        conditions?: { type: string; status: string; reason: string; message: string }[];
      };
    }
    const scalingActive = (hpa: Hpa | undefined) =>
      hpa?.status.conditions?.find((c) => c.type === 'ScalingActive');
    const utilization = (hpa: Hpa | undefined) =>
      hpa?.status.currentMetrics?.[0]?.resource?.current?.averageUtilization;
    // Whatever fails above, the scenarios after this one run without autoscaling.
    after(async () => {
      await patchPolicy({ spec: { autoscaling: { enabled: false } } });
      await waitFor(
        'autoscaling off again after scenario 7',
        async () => (await kubectl(['get', 'hpa', '-n', NAMESPACE, '-o', 'name'])).stdout.trim() === '',
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
    });

    test('never fewer than the minimum on the way; under load through the Service the HPA scales out', async (t) => {
      await patchPolicy({ spec: { replicas: 3 } });
      await waitRelayPods(['relay-relay-0', 'relay-relay-1', 'relay-relay-2'], 'three relay pods Ready');
      const before = await relayPods();
      const seen: { replicas: number; ready: number }[] = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const sts = await getJson<Sts>(['statefulset', STATEFULSET, '-n', NAMESPACE]);
          seen.push({ replicas: sts.spec.replicas ?? 1, ready: sts.status.readyReplicas ?? 0 });
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      let hpa: Hpa | undefined;
      const getHpa = async () => {
        hpa = await getJson<Hpa>(['hpa', STATEFULSET, '-n', NAMESPACE]).catch(() => hpa);
        return hpa;
      };
      /** The last HPA read under load that measured the pods (ScalingActive True). */
      let measured: Hpa | undefined;
      const load = steadyLoad('autoscaling', 4, 0);
      try {
        // A CPU request of 30m and a target of 60 % (18m): a relay just started and idle
        // used about 8m when measured, one under this load 35-50m.
        await patchPolicy({
          spec: {
            resources: { requests: { cpu: '30m' } },
            autoscaling: {
              enabled: true,
              minReplicas: 2,
              maxReplicas: 4,
              targetCPUUtilizationPercentage: 60,
            },
          },
        });
        // The pods roll for their new CPU request; idle, the HPA keeps them at 3 (it
        // holds a scale-down for five minutes after it first sees a count): wait until
        // all three are new, Ready and measured (ScalingActive True).
        await waitFor(
          'the HPA measuring three new Ready relay pods',
          async () => {
            const pods = await relayPods();
            const active = scalingActive(await getHpa())?.status === 'True';
            return (
              active &&
              pods.length === 3 &&
              pods.every((p) => p.ready && !before.some((b) => b.uid === p.uid))
            );
          },
          { timeoutMs: 400_000, intervalMs: 1000 },
        ).catch(async (err: unknown) => {
          throw new Error(`${(err as Error).message}\n${JSON.stringify(hpa)}\n${await allPods()}`);
        });
        t.diagnostic(`idle: ${utilization(hpa)} % of the CPU request; ${JSON.stringify(scalingActive(hpa))}`);
        assert.ok(
          (await getJson<Sts>(['statefulset', STATEFULSET, '-n', NAMESPACE])).spec.replicas === 3,
          'idle, the HPA leaves three replicas',
        );

        // Load: clients sending through the Service as fast as the relays answer.
        load.start();
        await waitFor(
          'the HPA scaling the StatefulSet out and the new pods Ready',
          async () => {
            if (load.failures.length > 0) return true; // the assertions after the wait report it
            const sts = await getJson<Sts>(['statefulset', STATEFULSET, '-n', NAMESPACE]);
            const replicas = sts.spec.replicas ?? 0;
            // the condition is read at each look: a new pod without metrics yet, or
            // metrics-server briefly unready on a loaded machine, makes it False for a sync
            if (scalingActive(await getHpa())?.status === 'True') measured = hpa;
            if (replicas <= 3) return false;
            const pods = await relayPods();
            return pods.length === replicas && pods.every((p) => p.ready);
          },
          { timeoutMs: 400_000, intervalMs: 2000 },
        ).catch(async (err: unknown) => {
          throw new Error(`${(err as Error).message}\n${JSON.stringify(hpa)}\n${await allPods()}`);
        });
        await getHpa();
      } finally {
        await load.stop();
        watching = false;
        await watcher;
      }
      const pods = await relayPods();
      t.diagnostic(
        `under load (${load.sent.length} messages): ${utilization(measured)} % of the request, ${pods.length} Ready pods; ScalingActive=${scalingActive(measured)?.status} ${scalingActive(measured)?.reason}`,
      );
      t.diagnostic(
        `StatefulSet replicas seen: min ${Math.min(...seen.map((s) => s.replicas))}, max ${Math.max(...seen.map((s) => s.replicas))}, ready min ${Math.min(...seen.map((s) => s.ready))} over ${seen.length} reads`,
      );
      assert.deepEqual(load.failures, []);
      assert.equal(hpa?.spec.minReplicas, 2);
      assert.equal(hpa?.spec.maxReplicas, 4);
      assert.equal(scalingActive(measured)?.status, 'True', JSON.stringify(hpa));
      assert.ok(
        (utilization(measured) ?? 0) > 60,
        `${utilization(measured)} % of the CPU request under load`,
      );
      assert.ok(pods.length > 3 && pods.length <= 4, `${pods.length} relay pods under load`);
      assert.ok(seen.length > 0);
      for (const s of seen) {
        assert.ok(s.replicas >= 3, `the StatefulSet asked for ${s.replicas} pods while 3 ran`);
        assert.ok(s.ready >= 2, `${s.ready} ready pods, below the minimum of 2`);
      }
      await exactlyOnce(sink, load.sent);

      // autoscaling off again: spec.replicas (3) owns the count
      await patchPolicy({ spec: { autoscaling: { enabled: false } } });
      await waitFor(
        'the HPA removed, the StatefulSet at spec.replicas',
        async () =>
          (await kubectl(['get', 'hpa', '-n', NAMESPACE, '-o', 'name'])).stdout.trim() === '' &&
          (await getJson<Sts>(['statefulset', STATEFULSET, '-n', NAMESPACE])).spec.replicas === 3,
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
      await waitRelayPods(['relay-relay-0', 'relay-relay-1', 'relay-relay-2'], 'three relay pods Ready');
    });
  });

  describe('scenario 6: scale 3 → 1 with mail queued for an unreachable destination', () => {
    test('kubectl sluice lists every pod’s queue through the pod proxy; the stopping relays hand their queues over; every message is delivered once', async () => {
      const pods = await relayPods();
      assert.deepEqual(
        pods.map((p) => p.name),
        ['relay-relay-0', 'relay-relay-1', 'relay-relay-2'],
      );
      const subjects: string[] = [];
      const queued: Array<{ pod: string; id: string }> = [];
      for (const pod of pods.slice(1)) {
        for (const i of [1, 2, 3]) {
          const subject = `queued on ${pod.name} ${i}`;
          // nothing listens at held.test's MX: the relay keeps it queued
          queued.push({ pod: pod.name, id: await send(at(pod), `someone@${HELD}`, subject) });
          subjects.push(subject);
        }
      }
      // what an admin sees with `kubectl sluice queue list`: every relay pod's queue, reached
      // through the API server's pod proxy (the plugin's default), with the admin token it
      // reads from the policy's Secret
      let listed = '';
      await waitFor(
        'the six queued messages in `kubectl sluice queue list`',
        async () => {
          const { stdout } = await promisify(execFile)(
            process.execPath,
            [PLUGIN, 'queue', 'list', '--policy', POLICY, '-n', NAMESPACE],
            { env: { ...process.env, KUBECONFIG: cluster.cp.kubeconfigPath } },
          );
          listed = stdout;
          const lines = stdout.split('\n');
          return queued.every(({ pod, id }) =>
            lines.some((l) => l.startsWith(`${pod} `) && l.includes(` ${id} `)),
          );
        },
        { timeoutMs: 60_000, intervalMs: 1000, detail: () => listed },
      );
      assert.match(listed, /^-Pod-+ -Queue ID-+ --Size-- ----Arrival Time---- -Sender\/Recipient-+$/m);
      await patchPolicy({ spec: { replicas: 1 } });
      // the stopping pods gone altogether (not only terminating): what they held, relay-0 holds
      await waitFor(
        'relay-relay-1 and relay-relay-2 gone',
        async () => (await relayPods(true)).map((p) => p.name).join() === 'relay-relay-0',
        { timeoutMs: 300_000, intervalMs: 1000 },
      ).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${await allPods()}`);
      });
      await waitPolicyReady(cluster);
      const held = await startSmtpSink({ host: heldHost, port: sink.port });
      extraSinks.push(held);
      await exactlyOnce(held, subjects);
    });
  });

  describe('scenario 8: the spool size changed', () => {
    test('on a StorageClass without expansion: SpoolExpansionFailed, mail still flows, a later change applies', async () => {
      await patchPolicy({ spec: { spool: { size: '20Gi' } } });
      let found: { type: string; status: string; reason: string; message: string } | undefined;
      await waitFor(
        'a SpoolExpansionFailed condition',
        async () => {
          const status = await getJson<{
            status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
          }>(['relaypolicy', POLICY, '-n', NAMESPACE]);
          found = status.status?.conditions?.find((c) => c.reason === 'SpoolExpansionFailed');
          return found !== undefined;
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
      assert.equal(found?.type, 'Degraded');
      assert.equal(found?.status, 'True');
      assert.match(
        found?.message ?? '',
        /spec\.spool\.size 10Gi → 20Gi: .*PersistentVolumeClaim spool-relay-relay-0: /,
      );
      assert.match(
        found?.message ?? '',
        /the StatefulSet keeps 10Gi until its volumes can grow \(a StorageClass with allowVolumeExpansion\)/,
      );
      // not stuck: the pods serve and another change is carried out
      await send(service, `bob@${DOMAIN}`, 'after the spool change');
      await exactlyOnce(sink, ['after the spool change']);
      await patchPolicy({ spec: { replicas: 2 } });
      await waitRelayPods(['relay-relay-0', 'relay-relay-1'], 'two relay pods Ready after the spool change');
    });
  });
});
