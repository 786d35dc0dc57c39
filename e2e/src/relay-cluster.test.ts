// Scenarios 1-3 of issue 6 on one cluster: install with helm and kubectl apply, mail
// through both relay replicas (and what the policy refuses), state shared through Redis.
// No kubelet runs here: kubelet-shim.ts runs the relay pods as processes (see its header).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { skipUnlessBuilt } from '@sluice/operator/testing/control-plane';
import type { SinkMessage } from '@sluice/relay/testing';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { helm } from './helm.ts';
import { kubectlTables, row } from './kubectl-table.ts';
import {
  DNSBL_ZONE,
  DOMAIN,
  LISTED_CLIENT,
  NAMESPACE,
  RELEASE,
  RELEASE_NAMESPACE,
  type SluiceCluster,
  startSluiceCluster,
  type TestUser,
} from './sluice-cluster.ts';
import { authReply, connectRaw, mailer, type SmtpError } from './smtp-clients.ts';
import { swaks } from './swaks.ts';

const skip = skipUnlessBuilt();
if (skip) console.log(`# SKIP e2e: ${skip}`);

const alice: TestUser = { name: 'alice', username: 'alice', password: 'alice-e2e-Pa55word' };
const limited: TestUser = {
  name: 'limited',
  username: 'limited',
  password: 'limited-e2e-Pa55word',
  extra: { rateLimits: [{ what: 'messages', limit: 2, windowSeconds: 3600 }] },
};
const locked: TestUser = { name: 'locked', username: 'locked', password: 'locked-e2e-Pa55word' };
const FROM = 'alice@shop.example';
const QUEUED = /^250 2\.0\.0 Ok: queued as (\S+)/;

/** The message at the sink whose Subject header is `subject`. */
function bySubject(c: SluiceCluster, subject: string): SinkMessage | undefined {
  return c.sink.messages.find((m) => m.raw.toString('utf8').includes(`\r\nSubject: ${subject}\r\n`));
}

/** Sends with nodemailer and returns the error it fails with. */
async function refusal(send: () => Promise<unknown>): Promise<SmtpError> {
  try {
    await send();
  } catch (err: unknown) {
    return err as SmtpError;
  }
  throw new Error('the message was accepted');
}

describe('a relay cluster installed with helm and kubectl', { timeout: 400_000 }, () => {
  let c: SluiceCluster;
  let ready: Promise<unknown> | undefined;
  const tag = randomBytes(4).toString('hex');

  before(async () => {
    if (!skip) c = await startSluiceCluster({ users: [alice, limited, locked] });
  });
  after(async () => {
    await c?.stop();
  });
  /** Every scenario needs the cluster Ready; the first one asserts how it got there. */
  const whenReady = () => {
    ready ??= c.waitReady(2);
    return ready;
  };

  it('goes Ready: helm install, kubectl apply, the operator with the chart RBAC, kubectl get columns', {
    skip,
  }, async () => {
    await whenReady();
    const policy = await c.policy();
    const readyCondition = policy.status?.conditions?.find((x) => x.type === 'Ready');
    assert.equal(readyCondition?.status, 'True');
    assert.equal(readyCondition?.reason, 'PodsReady');
    assert.equal(readyCondition?.message, '2 of 2 relay pods ready');
    assert.equal(policy.status?.userCount, 3);
    assert.equal(c.operator.serviceAccount, `${RELEASE}-operator`);
    assert.match(
      await helm(['status', RELEASE, '--namespace', RELEASE_NAMESPACE], {
        kubeconfig: c.cp.kubeconfigPath,
        dir: c.dir,
      }),
      /STATUS: deployed/,
    );
    assert.deepEqual(
      c.pods().map((p) => p.ip),
      [c.podIp(0), c.podIp(1)],
    );

    const { stdout } = await c.kubectl(['get', 'relaypolicies,smtpusers', '-n', NAMESPACE]);
    const [policies, users] = kubectlTables(stdout);
    const policyColumns = ['REPLICAS', 'READY-PODS', 'USERS', 'READY', 'AGE'];
    const userColumns = ['USERNAME', 'POLICY', 'SUSPENDED', 'READY', 'AGE'];
    for (const [table, columns] of [
      [policies, policyColumns],
      [users, userColumns],
    ] as const) {
      assert.equal(table?.columns[0], 'NAME', stdout);
      assert.deepEqual(
        table?.columns.filter((x) => columns.includes(x)),
        columns,
        `the printer columns, in order:\n${stdout}`,
      );
    }
    assert.deepEqual(row(policies, 'relaypolicy.sluice.dev/relay', policyColumns.slice(0, 4)), {
      REPLICAS: '2',
      'READY-PODS': '2',
      USERS: '3',
      READY: 'True',
    });
    for (const user of [alice, limited, locked]) {
      assert.deepEqual(row(users, `smtpuser.sluice.dev/${user.name}`, userColumns.slice(0, 4)), {
        USERNAME: user.username,
        POLICY: 'relay',
        SUSPENDED: 'false',
        READY: 'True',
      });
    }
    assert.match(row(users, 'smtpuser.sluice.dev/alice', ['AGE'])?.AGE ?? '', /^\d+s$/);
  });

  it('delivers mail sent with swaks to one replica and with nodemailer to the other', { skip }, async () => {
    await whenReady();
    const swaksSubject = `via swaks ${tag}`;
    const sent = await swaks([
      '--server',
      `${c.podIp(0)}:${c.ports.submission}`,
      '--tls',
      '--auth',
      'PLAIN',
      '--auth-user',
      alice.username,
      '--auth-password',
      alice.password,
      '--helo',
      'client.e2e.test',
      '--from',
      FROM,
      '--to',
      `bob@${DOMAIN}`,
      '--header',
      `Subject: ${swaksSubject}`,
      '--body',
      'Hello from swaks',
    ]);
    assert.equal(sent.exitCode, 0, sent.transcript);
    const swaksId = QUEUED.exec(sent.lastReply)?.[1];
    assert.ok(swaksId, sent.transcript);

    const nodemailerSubject = `via nodemailer ${tag}`;
    const info = await mailer(c.submission(1), alice.username, alice.password).sendMail({
      from: FROM,
      to: `carol@${DOMAIN}`,
      subject: nodemailerSubject,
      text: 'Hello from nodemailer',
    });
    const nodemailerId = QUEUED.exec(info.response)?.[1];
    assert.ok(nodemailerId, info.response);

    const [viaSwaks, viaNodemailer] = await waitFor(
      'both messages at the sink',
      () => {
        const a = bySubject(c, swaksSubject);
        const b = bySubject(c, nodemailerSubject);
        return a && b && ([a, b] as const);
      },
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(viaSwaks.recipients, [`bob@${DOMAIN}`]);
    assert.equal(viaSwaks.sender, FROM);
    assert.match(viaSwaks.raw.toString('utf8'), /Hello from swaks/);
    assert.deepEqual(viaNodemailer.recipients, [`carol@${DOMAIN}`]);
    assert.match(viaNodemailer.raw.toString('utf8'), /Hello from nodemailer/);
    // each went through the replica it was sent to: its queue id is in that pod's log
    const [pod0, pod1] = c.pods();
    assert.ok(pod0?.logs.some((l) => l.queueId === swaksId && l.event === 'accepted'));
    assert.ok(pod1?.logs.some((l) => l.queueId === nodemailerId && l.event === 'accepted'));
  });

  it('takes the first 30 recipients and answers the 31st with 452 4.5.3', { skip }, async () => {
    await whenReady();
    const subject = `31 recipients ${tag}`;
    const to = Array.from({ length: 31 }, (_, i) => `r${i + 1}@${DOMAIN}`);
    const info = await mailer(c.submission(0), alice.username, alice.password).sendMail({
      from: FROM,
      to,
      subject,
      text: 'to many',
    });
    assert.equal(info.accepted.length, 30);
    assert.deepEqual(info.rejected, [`r31@${DOMAIN}`]);
    const rejected = (info as { rejectedErrors?: SmtpError[] }).rejectedErrors?.[0];
    assert.match(rejected?.response ?? '', /^452 4\.5\.3 Too many recipients, at most 30 per message/);
    const delivered = await waitFor('the message at the sink', () => bySubject(c, subject), {
      timeoutMs: 30_000,
    });
    assert.deepEqual([...delivered.recipients].sort(), to.slice(0, 30).sort());
  });

  it('refuses a 31 MiB message with 552 5.3.4', { skip }, async () => {
    await whenReady();
    const line = `${'x'.repeat(998)}\r\n`;
    const body = Buffer.from(line.repeat(Math.ceil((31 * 1024 * 1024) / line.length)));
    const raw = Buffer.concat([
      Buffer.from(`From: ${FROM}\r\nTo: big@${DOMAIN}\r\nSubject: big ${tag}\r\n\r\n`),
      body,
    ]);
    const err = await refusal(() =>
      mailer(c.submission(1), alice.username, alice.password).sendMail({
        envelope: { from: FROM, to: [`big@${DOMAIN}`] },
        raw,
      }),
    );
    assert.equal(err.responseCode, 552, err.message);
    assert.match(err.response ?? '', /^552 5\.3\.4 /);

    // and at once when the client declares the size
    const client = await connectRaw(c.submission(0));
    await client.greeting();
    await client.ehlo();
    await client.starttls();
    assert.equal((await client.authPlain(alice.username, alice.password)).code, 235);
    const mail = await client.command(`MAIL FROM:<${FROM}> SIZE=${31 * 1024 * 1024}`);
    assert.equal(mail.code, 552);
    assert.match(mail.text, /^5\.3\.4 /);
    await client.quit();
  });

  it('refuses a .exe attachment with 550 5.7.1 naming the file', { skip }, async () => {
    await whenReady();
    const err = await refusal(() =>
      mailer(c.submission(0), alice.username, alice.password).sendMail({
        from: FROM,
        to: `bob@${DOMAIN}`,
        subject: `invoice ${tag}`,
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

  it('refuses a client listed in the DNSBL zone with 554 5.7.1, on both replicas', { skip }, async () => {
    await whenReady();
    for (const ordinal of [0, 1]) {
      const client = await connectRaw(c.submission(ordinal), { localAddress: LISTED_CLIENT });
      const greeting = await client.greeting();
      assert.equal(greeting.code, 554);
      assert.equal(greeting.text, `5.7.1 Client host [${LISTED_CLIENT}] is listed in ${DNSBL_ZONE}`);
      await client.waitClosed();
    }
    // an unlisted address on the same replica is served
    const client = await connectRaw(c.submission(0), { localAddress: '127.0.0.67' });
    assert.equal((await client.greeting()).code, 220);
    await client.quit();
  });

  it('holds a per-user rate limit across both replicas (Redis)', { skip }, async () => {
    await whenReady();
    const send = (ordinal: number, n: number) =>
      mailer(c.submission(ordinal), limited.username, limited.password).sendMail({
        from: 'limited@shop.example',
        to: `dave@${DOMAIN}`,
        subject: `limited ${n} ${tag}`,
        text: `message ${n}`,
      });
    assert.match((await send(0, 1)).response, QUEUED);
    assert.match((await send(1, 2)).response, QUEUED);
    // each replica has seen one message: only a shared counter knows the limit (2) is reached
    for (const ordinal of [0, 1]) {
      const err = await refusal(() => send(ordinal, 3 + ordinal));
      assert.equal(err.responseCode, 451, err.message);
      assert.match(
        err.response ?? '',
        /^451 4\.7\.1 Rate limit reached: 2 messages per hour for this account; try again in /,
      );
    }
  });

  it('locks a user out on both replicas after failures spread over both (Redis)', { skip }, async () => {
    await whenReady();
    const [pod0, pod1] = [c.submission(0), c.submission(1)];
    // maxFailuresPerUser is 3: two failures on one replica and one on the other
    for (const pod of [pod0, pod1, pod0]) {
      const reply = await authReply(pod, locked.username, 'wrong password');
      assert.equal(reply.code, 535);
      assert.match(reply.text, /^5\.7\.8 /);
    }
    for (const pod of [pod1, pod0]) {
      const reply = await authReply(pod, locked.username, locked.password);
      assert.equal(reply.code, 454, `${reply.code} ${reply.text}`);
      assert.match(reply.text, /^4\.7\.0 Too many failed authentications; try again in /);
    }
    // other users are not affected
    assert.equal((await authReply(pod1, alice.username, alice.password)).code, 235);
  });
});
