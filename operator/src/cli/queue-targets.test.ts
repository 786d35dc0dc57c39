// The queue command through the API server's pod proxy, against a real relay. The proxy
// is a stand-in: kube-apiserver refuses to proxy to loopback pod IPs, and every pod IP
// here is one (the fan-out across pods found through a real API server is in
// e2e/src/queue-cluster.test.ts, with --direct). It does what kube-apiserver does with
// such a request: authenticates the caller's bearer token, takes Authorization off, and
// passes the rest of the path to the pod's port.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { runQueueCli } from '@sluice/relay/queue-cli';
import { PASSWORD, PLAIN_LISTENER, RawSmtpClient, startTestRelay, waitFor } from '@sluice/relay/testing';
import { freePort } from '@sluice/relay/testing/ports';
import { apiServerFetch, proxyUrl } from './queue-targets.ts';

const KUBE_TOKEN = 'kube-user-token';
const ADMIN_TOKEN = 'relay-admin-token';
const POD = 'relay-relay-0';

/** kube-apiserver's pod proxy for one pod, whose admin port is adminPort on 127.0.0.1. */
async function podProxy(adminPort: number): Promise<{ url: string; close: () => Promise<void> }> {
  const prefix = `/api/v1/namespaces/mail/pods/${POD}:9587/proxy/`;
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${KUBE_TOKEN}`) {
      res.writeHead(401).end('{"kind":"Status","message":"Unauthorized"}');
      return;
    }
    if (!req.url?.startsWith(prefix)) {
      res.writeHead(404).end();
      return;
    }
    const { authorization: _taken, host: _host, ...headers } = req.headers;
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: adminPort,
        path: `/${req.url.slice(prefix.length)}`,
        method: req.method,
        headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('kubectl sluice through the pod proxy', () => {
  it('lists and holds with the kubeconfig credentials for the API server and the admin token for the relay', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-proxy-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'token'), ADMIN_TOKEN);
    const relay = await startTestRelay({
      deliver: true,
      config: {
        listeners: [PLAIN_LISTENER],
        auth: { allowPlaintext: true },
        admin: { address: '127.0.0.1', port: 0, tokenFile: join(dir, 'token') },
        // nothing listens there: the message stays queued
        delivery: {
          mode: 'smarthost',
          smarthost: { host: '127.0.0.1', port: await freePort(), tls: 'none' },
        },
      },
    });
    t.after(() => relay.close());
    const client = await RawSmtpClient.connect(relay.port('plain'));
    await client.greeting();
    await client.ehlo();
    await client.authPlain('alice', PASSWORD);
    const replies = await client.sendRaw('alice@sender.test', ['bob@one.test'], 'Subject: x\r\n\r\nx\r\n');
    await client.quit();
    const queueId = /queued as (\S+)/.exec(replies.at(-1)?.text ?? '')?.[1];
    assert.ok(queueId);
    await waitFor('an attempt', () =>
      relay.logs.events('delivery_attempt').some((l) => l.queueId === queueId),
    );

    const proxy = await podProxy(relay.relay.adminPort);
    t.after(() => proxy.close());
    const kc = new KubeConfig();
    kc.loadFromOptions({
      // client-node speaks plain HTTP to a server only with skipTLSVerify
      clusters: [{ name: 'c', server: proxy.url, skipTLSVerify: true }],
      users: [{ name: 'admin', token: KUBE_TOKEN }],
      contexts: [{ name: 'x', cluster: 'c', user: 'admin', namespace: 'mail' }],
      currentContext: 'x',
    });
    const target = {
      name: POD,
      url: proxyUrl(kc, 'mail', POD),
      token: ADMIN_TOKEN,
      fetch: apiServerFetch(kc),
    };
    const run = async (args: string[]) => {
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      stdout.on('data', (c: Buffer) => out.push(c));
      stderr.on('data', (c: Buffer) => err.push(c));
      const code = await runQueueCli(args, { stdout, stderr, url: '', token: '', targets: [target] });
      return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
    };

    const held = await run(['hold', queueId]);
    assert.deepEqual(held, { code: 0, stdout: `${POD}: ${queueId}: placed on hold\n`, stderr: '' });
    const listed = await run(['list']);
    assert.equal(listed.stderr, '');
    assert.match(listed.stdout, new RegExp(`^${POD} +${queueId}! +\\d+ .* alice@sender\\.test$`, 'm'));

    // a wrong admin token is the relay's 401, passed back through the proxy
    const wrong = await runQueueCli(['list'], {
      stdout: new PassThrough(),
      stderr: new PassThrough(),
      url: '',
      token: '',
      targets: [{ ...target, token: 'wrong' }],
    });
    assert.equal(wrong, 1);
  });
});
