// The relays of a policy as targets of the queue command: its pods, found through the
// Kubernetes API by the labels the operator gives them (build/names.ts), and the admin
// token from the Secret the operator writes for them (the one the pods mount), so an
// admin never copies a token by hand. Each pod is reached through the API server's pod
// proxy (no network route from the admin's machine to the pods needed), or, with
// direct, at its pod IP (from inside the cluster network, or where the API server cannot
// proxy: it refuses loopback pod IPs).
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { QueueTarget } from '@sluice/relay/queue-cli';
import type { RelayPolicy } from '../api/types.ts';
import { ADMIN_PORT, names, selectorString } from '../build/names.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { PODS } from '../kube/resources.ts';

/** The header the relay's admin API takes the token in when Authorization is the API server's. */
const TOKEN_HEADER = 'x-sluice-admin-token';
const ADMIN_TOKEN_KEY = 'admin-token';

export class TargetsError extends Error {}

interface Pod extends KubeObject {
  status?: { phase?: string; podIP?: string };
}

interface Secret extends KubeObject {
  data?: Record<string, string>;
}

export interface PolicyTargets {
  targets: QueueTarget[];
  /** Pods of the policy that cannot be asked (not running, no IP yet), with why. */
  skipped: string[];
}

/** The running relay pods of a policy, oldest ordinal first, and how to reach each one's admin API. */
export async function policyTargets(options: {
  client: KubeClient;
  kc: KubeConfig;
  namespace: string;
  policy: string;
  direct: boolean;
}): Promise<PolicyTargets> {
  const { client, namespace } = options;
  const policy = await client.get<RelayPolicy & KubeObject>(
    'sluice.dev/v1alpha1',
    'RelayPolicy',
    namespace,
    options.policy,
  );
  if (!policy)
    throw new TargetsError(`relaypolicy "${options.policy}" not found in namespace "${namespace}"`);
  const secretName = names(policy).internalSecret;
  const secret = await client.get<Secret>('v1', 'Secret', namespace, secretName);
  const encoded = secret?.data?.[ADMIN_TOKEN_KEY];
  if (encoded === undefined)
    throw new TargetsError(`secret "${secretName}" in namespace "${namespace}" has no ${ADMIN_TOKEN_KEY}`);
  const token = Buffer.from(encoded, 'base64').toString('utf8');
  const { items } = await client.list<Pod>(PODS, { namespace, labelSelector: selectorString(policy) });
  const pods = items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, 'en', { numeric: true }));
  const targets: QueueTarget[] = [];
  const skipped: string[] = [];
  for (const pod of pods) {
    const name = pod.metadata.name;
    const ip = pod.status?.podIP;
    if (pod.metadata.deletionTimestamp) skipped.push(`${name} (terminating)`);
    else if (pod.status?.phase !== 'Running' || !ip)
      skipped.push(`${name} (${pod.status?.phase ?? 'no status'})`);
    else if (options.direct)
      targets.push({ name, url: `http://${ip.includes(':') ? `[${ip}]` : ip}:${ADMIN_PORT}/`, token });
    else
      targets.push({
        name,
        url: proxyUrl(options.kc, namespace, name),
        token,
        fetch: apiServerFetch(options.kc),
      });
  }
  return { targets, skipped };
}

/** The URL of a pod's admin API through the API server's pod proxy. */
export function proxyUrl(kc: KubeConfig, namespace: string, pod: string): string {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new TargetsError('the kubeconfig has no current cluster');
  const ns = encodeURIComponent(namespace);
  return `${server.replace(/\/$/, '')}/api/v1/namespaces/${ns}/pods/${encodeURIComponent(pod)}:${ADMIN_PORT}/proxy/`;
}

/**
 * A fetch that goes to the API server with the kubeconfig's credentials (client
 * certificate, token or exec plugin) and moves the admin token to TOKEN_HEADER, as the
 * API server takes Authorization for itself.
 */
export function apiServerFetch(kc: KubeConfig): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input);
    const given = new Headers(init?.headers);
    const headers: Record<string, string> = { accept: given.get('accept') ?? 'application/json' };
    const bearer = /^Bearer +(\S+)$/i.exec(given.get('authorization') ?? '')?.[1];
    if (bearer !== undefined) headers[TOKEN_HEADER] = bearer;
    const options: https.RequestOptions = { method: init?.method ?? 'GET', headers };
    if (init?.signal) options.signal = init.signal;
    await kc.applyToHTTPSOptions(options);
    const transport = url.protocol === 'http:' ? http : https;
    return new Promise<Response>((resolve, reject) => {
      const request = transport.request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 502;
          const body = [204, 205, 304].includes(status) ? null : Buffer.concat(chunks);
          resolve(new Response(body, { status }));
        });
      });
      request.on('error', reject);
      request.end();
    });
  }) as typeof fetch;
}
