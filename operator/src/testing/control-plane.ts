// A real Kubernetes control plane for the operator's and the e2e tests: etcd and
// kube-apiserver, built from their Go modules by e2e/controlplane/build.sh, started on
// 127.0.0.1 and random ports with a fresh data directory, certificates and
// service-account keys for each start. It lives here, exported as
// @sluice/operator/testing/control-plane, so that the dependency runs one way:
// e2e -> operator -> relay.
//
// It runs only etcd and kube-apiserver: no kubelet (nothing runs a Pod), no
// kube-controller-manager (no garbage collection of owned objects, no namespace
// finalization, no Deployment -> ReplicaSet -> Pod, no default ServiceAccount in a new
// namespace, no token controller) and no scheduler. RBAC is enforced.
//
// Identities tests can act as:
//   - the admin: client certificate CN=admin, O=system:masters (the `kubeconfigPath`);
//   - any user and groups: `kubeconfigFor({ user, groups })`, a client certificate signed
//     by the cluster CA (authenticates as that user; RBAC decides the rest);
//   - a ServiceAccount: `serviceAccountKubeconfig(namespace, name)`, a bearer token from
//     the TokenRequest API (what a pod's projected token is), signed with the
//     service-account key and checked by the API server like in a real cluster.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { accessSync, constants, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '@sluice/relay/testing/ports';
import { skipUnlessPresent } from '@sluice/relay/testing/requirements';
import { waitFor } from '@sluice/relay/testing/wait-for';

const execFileAsync = promisify(execFile);

// the Go module build.sh builds from stays with the e2e build scripts
const CONTROLPLANE_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'e2e',
  'controlplane',
);
/** The command that builds the binaries, relative to the repository root. */
export const BUILD_COMMAND = 'e2e/controlplane/build.sh';
const OPENSSL = process.env.OPENSSL ?? 'openssl';

export type BinaryName = 'kube-apiserver' | 'kubectl' | 'etcd' | 'helm';

export interface ControlPlaneVersions {
  kubernetes: string;
  etcd: string;
  helm: string;
}

/** The versions pinned in e2e/controlplane/go.mod (what build.sh builds). */
export function controlPlaneVersions(): ControlPlaneVersions {
  const goMod = readFileSync(join(CONTROLPLANE_DIR, 'go.mod'), 'utf8');
  const version = (module: string): string => {
    const escaped = module.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    const match = goMod.match(new RegExp(`^\\s*${escaped}\\s+(v\\S+)`, 'm'));
    if (match?.[1] === undefined) throw new Error(`${module} is not required in ${CONTROLPLANE_DIR}/go.mod`);
    return match[1];
  };
  return {
    kubernetes: version('k8s.io/kubernetes'),
    etcd: version('go.etcd.io/etcd/server/v3'),
    helm: version('helm.sh/helm/v3'),
  };
}

/** The cache build.sh writes to: ${SLUICE_CACHE:-$HOME/.cache/sluice}. */
export function cacheDir(): string {
  return process.env.SLUICE_CACHE || join(homedir(), '.cache', 'sluice');
}

/** Where build.sh puts each binary: <cache>/bin/<name>-<version>, the version from go.mod. */
export function binaryPaths(): Record<BinaryName, string> {
  const v = controlPlaneVersions();
  const bin = join(cacheDir(), 'bin');
  return {
    'kube-apiserver': join(bin, `kube-apiserver-${v.kubernetes}`),
    kubectl: join(bin, `kubectl-${v.kubernetes}`),
    etcd: join(bin, `etcd-${v.etcd}`),
    helm: join(bin, `helm-${v.helm}`),
  };
}

/** The binaries among `names` that are not built yet (absolute paths). */
export function missingBinaries(
  names: BinaryName[] = ['kube-apiserver', 'kubectl', 'etcd', 'helm'],
): string[] {
  const paths = binaryPaths();
  return names
    .map((name) => paths[name])
    .filter((path) => {
      try {
        accessSync(path, constants.X_OK);
        return false;
      } catch {
        return true;
      }
    });
}

/** A skip reason for node:test when the binaries are missing, or false when all are there. */
export function skipUnlessBuilt(names?: BinaryName[]): string | false {
  const missing = missingBinaries(names);
  if (missing.length === 0) return false;
  return skipUnlessPresent(
    `control-plane binaries not built (missing ${missing.join(', ')}); run ${BUILD_COMMAND} (the first build takes tens of minutes)`,
  );
}

export interface ControlPlaneOptions {
  /** How long to wait for etcd and then for kube-apiserver's /readyz (each). Default 120 s. */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags, e.g. ['--feature-gates=...']; later flags win. */
  apiServerArgs?: string[];
  /** Keep the data directory (certificates, kubeconfigs, logs) after stop(), for debugging. */
  keepDir?: boolean;
  /**
   * A node's address to serve on instead of 127.0.0.1 (bind, advertise and the serving
   * certificate), so that pods reach the API server; the certificate also names
   * `extraServingIps` (the `kubernetes` Service's ClusterIP).
   */
  address?: string;
  extraServingIps?: string[];
  /** Keep the ServiceAccount admission plugin on (pods get tokens; needs a token controller). */
  serviceAccountAdmission?: boolean;
  /** Give kube-apiserver a client certificate for kubelets (logs, exec) and use their node IP. */
  kubeletClient?: boolean;
  /** Authorize kubelets with the Node authorizer before RBAC (`--authorization-mode=Node,RBAC`). */
  nodeAuthorization?: boolean;
  /**
   * Turn the aggregation layer on (APIServices served by a pod, e.g. metrics-server): a
   * front-proxy client certificate and the request-header flags. The cluster CA signs the
   * front-proxy certificate too (a cluster usually has a CA of its own for it); only the
   * name front-proxy-client may assert a user in request headers.
   */
  aggregationLayer?: boolean;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  /** A kubeconfig for the admin (CN=admin, O=system:masters), certificates embedded. */
  kubeconfigPath: string;
  /** The temporary directory holding data, certificates, kubeconfigs and logs. */
  dir: string;
  /** The cluster CA certificate (PEM file), which signs the serving and client certificates. */
  caCertPath: string;
  /** http://127.0.0.1:<port>, etcd's client URL. */
  etcdEndpoint: string;
  /** PIDs of etcd and kube-apiserver, for checks that nothing is left running. */
  pids: number[];
  /** The service-account signing key (PEM), for kube-controller-manager's token controller. */
  serviceAccountKeyPath: string;
  /** A kubeconfig that authenticates with a client certificate as `user` in `groups`. */
  kubeconfigFor(identity: { user: string; groups?: string[] }): Promise<string>;
  /**
   * A kubeconfig with a bearer token from the TokenRequest API for the ServiceAccount
   * (created when missing; its namespace must exist). The API server authenticates it as
   * system:serviceaccount:<namespace>:<name> in groups system:serviceaccounts and
   * system:serviceaccounts:<namespace>.
   */
  serviceAccountKubeconfig(namespace: string, name: string, expirationSeconds?: number): Promise<string>;
  /** Runs the cached kubectl against this control plane (admin unless `kubeconfig` is given). */
  kubectl(args: string[], options?: { kubeconfig?: string; input?: string }): Promise<KubectlResult>;
  /** Stops kube-apiserver, then etcd, waits for both to exit and removes `dir`. */
  stop(): Promise<void>;
}

interface Pki {
  caCert: string;
  caKey: string;
  config: string;
}

/** Starts etcd and kube-apiserver; resolves when /readyz answers ok. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const notBuilt = skipUnlessBuilt(['kube-apiserver', 'etcd', 'kubectl']);
  if (notBuilt) throw new Error(notBuilt);
  const bins = binaryPaths();
  const timeoutMs = options.startTimeoutMs ?? 120_000;
  const dir = await mkdtemp(join(tmpdir(), 'sluice-cp-'));
  const processes: Managed[] = [];
  const stopAll = async () => {
    for (const p of processes.reverse()) await p.stop();
    if (!options.keepDir) await rm(dir, { recursive: true, force: true });
  };

  try {
    const address = options.address ?? '127.0.0.1';
    const servingIps = [...new Set(['127.0.0.1', address, ...(options.extraServingIps ?? [])])];
    const pki = await createPki(join(dir, 'pki'), servingIps);
    const serving = await issueCertificate(pki, 'kube-apiserver', [], 'server');
    const kubeletClientArgs: string[] = [];
    if (options.kubeletClient) {
      const client = await issueCertificate(pki, 'kube-apiserver-kubelet-client', [], 'client');
      kubeletClientArgs.push(
        `--kubelet-client-certificate=${client.cert}`,
        `--kubelet-client-key=${client.key}`,
        '--kubelet-preferred-address-types=InternalIP',
      );
    }
    const aggregationArgs: string[] = [];
    if (options.aggregationLayer) {
      const proxy = await issueCertificate(pki, 'front-proxy-client', [], 'client');
      aggregationArgs.push(
        `--requestheader-client-ca-file=${pki.caCert}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${proxy.cert}`,
        `--proxy-client-key-file=${proxy.key}`,
        // to the APIService's endpoint (a pod IP on the bridge), not through its ClusterIP
        '--enable-aggregator-routing=true',
      );
    }
    const admin = await issueCertificate(pki, 'admin', ['system:masters'], 'client');
    const saKeyPath = join(dir, 'pki', 'service-account.key');
    const saPubPath = join(dir, 'pki', 'service-account.pub');
    const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(saKeyPath, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(saPubPath, sa.publicKey.export({ type: 'spki', format: 'pem' }));

    const etcd = await retryOnPortClash(async () => {
      const [client, peer] = [await freePort(), await freePort()];
      const endpoint = `http://127.0.0.1:${client}`;
      const peerUrl = `http://127.0.0.1:${peer}`;
      const managed = startProcess('etcd', bins.etcd, dir, [
        '--name=e2e',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=e2e=${peerUrl}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ]);
      processes.push(managed);
      await managed.waitUntil('etcd /health', () => etcdHealthy(endpoint), { timeoutMs });
      return { endpoint, managed };
    });

    const apiserver = await retryOnPortClash(async () => {
      const port = await freePort();
      const server = `https://${address}:${port}`;
      const managed = startProcess('kube-apiserver', bins['kube-apiserver'], dir, [
        `--advertise-address=${address}`,
        // Since 1.37 the default (lease) reconciler of the `kubernetes` Service's endpoints
        // refuses a loopback advertise address; nothing here routes to it anyway.
        ...(address === '127.0.0.1' ? ['--endpoint-reconciler-type=none'] : []),
        `--bind-address=${address}`,
        `--secure-port=${port}`,
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${serving.cert}`,
        `--tls-private-key-file=${serving.key}`,
        `--client-ca-file=${pki.caCert}`,
        `--authorization-mode=${options.nodeAuthorization ? 'Node,RBAC' : 'RBAC'}`,
        `--etcd-servers=${etcd.endpoint}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${saPubPath}`,
        `--service-account-signing-key-file=${saKeyPath}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        ...(options.serviceAccountAdmission ? [] : ['--disable-admission-plugins=ServiceAccount']),
        '--allow-privileged=true',
        ...kubeletClientArgs,
        ...aggregationArgs,
        ...(options.apiServerArgs ?? []),
      ]);
      processes.push(managed);
      const tls = {
        ca: await readFile(pki.caCert),
        cert: await readFile(admin.cert),
        key: await readFile(admin.key),
      };
      await managed.waitUntil('kube-apiserver /readyz', () => apiReady(server, tls), { timeoutMs });
      return { server, managed };
    });

    const { server } = apiserver;
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    await writeKubeconfig(kubeconfigPath, server, pki.caCert, 'admin', {
      cert: admin.cert,
      key: admin.key,
    });

    const kubectl = async (args: string[], opts: { kubeconfig?: string; input?: string } = {}) => {
      return runKubectl(
        bins.kubectl,
        ['--kubeconfig', opts.kubeconfig ?? kubeconfigPath, ...args],
        opts.input,
      );
    };

    let stopped: Promise<void> | undefined;
    return {
      server,
      kubeconfigPath,
      dir,
      caCertPath: pki.caCert,
      etcdEndpoint: etcd.endpoint,
      pids: [etcd.managed.pid, apiserver.managed.pid],
      serviceAccountKeyPath: saKeyPath,
      async kubeconfigFor({ user, groups = [] }) {
        const cert = await issueCertificate(pki, user, groups, 'client');
        const path = join(dir, `user-${safeName(user)}-${randomBytes(3).toString('hex')}.kubeconfig`);
        await writeKubeconfig(path, server, pki.caCert, user, cert);
        return path;
      },
      async serviceAccountKubeconfig(namespace, name, expirationSeconds = 3600) {
        const sa = JSON.stringify({
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name, namespace },
        });
        try {
          await kubectl(['create', '-f', '-'], { input: sa });
        } catch (err: unknown) {
          if (!String((err as Error).message).includes('AlreadyExists')) throw err;
        }
        const { stdout } = await kubectl([
          'create',
          'token',
          name,
          '-n',
          namespace,
          `--duration=${expirationSeconds}s`,
        ]);
        const path = join(dir, `sa-${safeName(namespace)}-${safeName(name)}.kubeconfig`);
        await writeKubeconfig(path, server, pki.caCert, `system:serviceaccount:${namespace}:${name}`, {
          token: stdout.trim(),
        });
        return path;
      },
      kubectl,
      stop() {
        stopped ??= stopAll();
        return stopped;
      },
    };
  } catch (err: unknown) {
    await stopAll();
    throw err;
  }
}

// --- processes -------------------------------------------------------------------------

export interface Managed {
  pid: number;
  /** waitFor with the process's log as the detail, failing at once if the process exits. */
  waitUntil(what: string, check: () => Promise<boolean>, options: { timeoutMs: number }): Promise<void>;
  /** SIGTERM, SIGKILL after 10 s, and wait for the exit. */
  stop(): Promise<void>;
}

class PortClash extends Error {}

/** util-linux's setpriv (Debian: essential), where this machine has it. */
const PDEATHSIG =
  process.platform === 'linux' && existsSync('/usr/bin/setpriv') ? '/usr/bin/setpriv' : undefined;

/** Starts `path` with its output in `<dir>/<name>.log`; killed if the test process exits. */
export function startProcess(
  name: string,
  path: string,
  dir: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Managed {
  const logPath = join(dir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  // Under setpriv --pdeathsig the process is killed when this one dies however it dies
  // (kill -9, a time limit), not only on a clean exit.
  const [command, argv] = PDEATHSIG
    ? [PDEATHSIG, ['--pdeathsig', 'KILL', '--', path, ...args]]
    : [path, args];
  const child: ChildProcess = spawn(command, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ?? process.env,
  });
  let tail = '';
  const collect = (chunk: Buffer) => {
    log.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-6000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    });
    child.once('error', () => resolve());
  });
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  const isRunning = () => child.exitCode === null && child.signalCode === null && spawnError === undefined;

  return {
    pid: child.pid ?? -1,
    async waitUntil(what, check, { timeoutMs }) {
      const outcome = await waitFor(what, async () => (isRunning() ? await check() : 'exited'), {
        timeoutMs,
        intervalMs: 250,
        detail: () => `log ${logPath}:\n${tail}`,
      });
      if (outcome === 'exited') {
        await exited;
        const detail = spawnError?.message ?? `exit ${child.exitCode ?? child.signalCode}`;
        const message = `${name} exited before ${what} answered (${detail}); log ${logPath}:\n${tail}`;
        if (/address already in use/i.test(tail)) throw new PortClash(message);
        throw new Error(message);
      }
    },
    async stop() {
      if (isRunning()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await new Promise<void>((r) => log.end(r));
    },
  };
}

/** A port found free can be taken before the server binds it: try a few. */
async function retryOnPortClash<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err: unknown) {
      if (!(err instanceof PortClash) || attempt >= 3) throw err;
    }
  }
}

async function etcdHealthy(endpoint: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(2000) });
  if (!response.ok) return false;
  const body = (await response.json()) as { health?: string };
  return body.health === 'true';
}

function apiReady(server: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${server}/readyz`, { ...tls, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'ok'));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function runKubectl(kubectl: string, args: string[], input?: string): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      kubectl,
      args,
      { maxBuffer: 64 * 1024 * 1024, timeout: 60_000, env: { ...process.env, KUBECONFIG: '' } },
      (err, stdout, stderr) => {
        if (err)
          reject(new Error(`kubectl ${args.slice(2).join(' ')}: ${err.message}\n${stderr}`, { cause: err }));
        else resolve({ stdout, stderr });
      },
    );
    // kubectl may exit before it reads its input (a NotFound answers at once): the write
    // then fails with EPIPE, which must not become an uncaught error; the exit status above
    // reports what happened
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

// --- certificates ----------------------------------------------------------------------

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = @server_names
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileAsync(OPENSSL, args, { timeout: 30_000 });
  } catch (err: unknown) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${(err as Error).message}\n${stderr}`, { cause: err });
  }
}

async function createPki(pkiDir: string, servingIps: string[]): Promise<Pki> {
  await mkdir(pkiDir, { recursive: true, mode: 0o700 });
  const config = join(pkiDir, 'openssl.cnf');
  const names = servingIps.map((ip, i) => `IP.${i + 1} = ${ip}`);
  const dns = ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'];
  names.push(...dns.map((name, i) => `DNS.${i + 1} = ${name}`));
  await writeFile(config, `${OPENSSL_CONFIG}[server_names]\n${names.join('\n')}\n`);
  const caCert = join(pkiDir, 'ca.crt');
  const caKey = join(pkiDir, 'ca.key');
  await openssl([
    'req',
    '-x509',
    '-config',
    config,
    '-extensions',
    'ca',
    ...EC_KEY,
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-subj',
    '/CN=sluice-e2e-ca',
    '-days',
    '2',
  ]);
  return { caCert, caKey, config };
}

/** Escapes a value for openssl's -subj (/ + = and \ are special). */
function subjectValue(value: string): string {
  return value.replace(/[\\/+=]/g, '\\$&');
}

/** A random positive 128-bit serial in openssl's hex notation. */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

function safeName(value: string): string {
  return value.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60);
}

async function issueCertificate(
  pki: Pki,
  commonName: string,
  organizations: string[],
  kind: 'server' | 'client',
): Promise<{ cert: string; key: string }> {
  const base = join(dirname(pki.caCert), `${kind}-${safeName(commonName)}-${randomBytes(4).toString('hex')}`);
  const subject = `/CN=${subjectValue(commonName)}${organizations.map((o) => `/O=${subjectValue(o)}`).join('')}`;
  await openssl([
    'req',
    '-new',
    '-config',
    pki.config,
    ...EC_KEY,
    '-keyout',
    `${base}.key`,
    '-out',
    `${base}.csr`,
    '-subj',
    subject,
  ]);
  await openssl([
    'x509',
    '-req',
    '-in',
    `${base}.csr`,
    '-CA',
    pki.caCert,
    '-CAkey',
    pki.caKey,
    '-set_serial',
    serialNumber(),
    '-days',
    '2',
    '-extfile',
    pki.config,
    '-extensions',
    kind,
    '-out',
    `${base}.crt`,
  ]);
  return { cert: `${base}.crt`, key: `${base}.key` };
}

async function writeKubeconfig(
  path: string,
  server: string,
  caCertPath: string,
  user: string,
  credentials: { cert: string; key: string } | { token: string },
): Promise<void> {
  const b64 = async (file: string) => (await readFile(file)).toString('base64');
  const userEntry =
    'token' in credentials
      ? { token: credentials.token }
      : {
          'client-certificate-data': await b64(credentials.cert),
          'client-key-data': await b64(credentials.key),
        };
  // JSON is valid YAML, and kubectl and @kubernetes/client-node both read it.
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority-data': await b64(caCertPath) } }],
    users: [{ name: user, user: userEntry }],
    contexts: [{ name: 'e2e', context: { cluster: 'e2e', user, namespace: 'default' } }],
    'current-context': 'e2e',
    preferences: {},
  };
  await writeFile(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
}
