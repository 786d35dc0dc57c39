// The operator run out of cluster, as the chart's Deployment would run it: the same
// environment (taken from the installed Deployment, with the downward-API fields filled
// in) and the identity of the chart's ServiceAccount (a TokenRequest token), so the
// chart's RBAC is what the operator may do. Only the admin server moves to 127.0.0.1
// and a free port, since 8080 may be taken on this machine.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ControlPlane } from '@sluice/operator/testing/control-plane';
import { freePort } from '@sluice/relay/testing/ports';
import { PodProcess } from './pod-process.ts';

const OPERATOR_MAIN = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'operator',
  'src',
  'main.ts',
);
const START_TIMEOUT_MS = 30_000;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

interface Deployment {
  spec: { template: { spec: { serviceAccountName?: string; containers: Array<{ env?: EnvVar[] }> } } };
}

export interface OperatorProcess {
  process: PodProcess;
  /** http://127.0.0.1:<port> with /healthz, /readyz, /metrics */
  adminUrl: string;
  serviceAccount: string;
  /** The last log lines, for failure messages. */
  tail(lines?: number): string;
  stop(): Promise<void>;
}

export async function startOperator(options: {
  cp: ControlPlane;
  /** The chart's release namespace and Deployment name. */
  namespace: string;
  deployment: string;
  dir: string;
  /** Variables over the Deployment's (what a platform team would set through the chart). */
  env?: Record<string, string>;
}): Promise<OperatorProcess> {
  const { cp, namespace } = options;
  const { stdout } = await cp.kubectl([
    'get',
    'deployment',
    options.deployment,
    '-n',
    namespace,
    '-o',
    'json',
  ]);
  const deployment = JSON.parse(stdout) as Deployment;
  const podSpec = deployment.spec.template.spec;
  const serviceAccount = podSpec.serviceAccountName ?? 'default';
  const podName = `${options.deployment}-e2e`;
  const fields: Record<string, string> = { 'metadata.name': podName, 'metadata.namespace': namespace };
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const e of podSpec.containers[0]?.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (field && fields[field] !== undefined) env[e.name] = fields[field];
  }
  const port = await freePort();
  env.ADMIN_PORT = String(port);
  env.ADMIN_HOST = '127.0.0.1';
  env.KUBECONFIG = await cp.serviceAccountKubeconfig(namespace, serviceAccount);
  Object.assign(env, options.env);
  const proc = new PodProcess({
    command: process.execPath,
    args: [OPERATOR_MAIN],
    env,
    cwd: options.dir,
    logFile: join(options.dir, 'operator.log'),
  });
  const adminUrl = `http://127.0.0.1:${port}`;
  const tail = (n = 30) =>
    [...proc.logs.slice(-n).map((l) => JSON.stringify(l)), proc.stderr].filter(Boolean).join('\n');
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (!proc.running) throw new Error(`the operator exited while starting:\n${tail()}`);
    const healthy = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (healthy) break;
    if (Date.now() > deadline) {
      await proc.stop(5000);
      throw new Error(`the operator's /healthz did not answer in ${START_TIMEOUT_MS} ms:\n${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { process: proc, adminUrl, serviceAccount, tail, stop: () => proc.stop(25_000) };
}
