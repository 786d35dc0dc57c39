// A JSON request to the API server with the KubeConfig's credentials (node:https), for
// what the generated clients do not fit: lists as the raw JSON the watch also delivers,
// and API discovery.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { httpError, KubeApiError } from './api-error.ts';

export interface RawRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Accept header; application/json by default (a PartialObjectMetadata list asks for metadata only) */
  accept?: string;
  timeoutMs?: number;
  /** Aborts the request (in flight or not yet sent): a leader that stepped down stops acting. */
  signal?: AbortSignal;
}

// client-node's agent for a kubeconfig (cached per cluster and user) is an https.Agent
// without keep-alive, so every request paid a new TLS handshake with the client
// certificate: CPU on both sides, and the OpenSSL allocations of 200 connections a second
// left the operator's native memory several times its heap during a cold start of 30,000
// users. Requests here reuse connections through a keep-alive twin of that agent (the
// same TLS options), made once per agent client-node hands out.
const keepAlive = new WeakMap<https.Agent, https.Agent>();
/** Idle connections are closed after this long, well before the API server's idle timeout. */
const IDLE_MS = 30_000;

function reusing(agent: https.RequestOptions['agent']): https.RequestOptions['agent'] {
  if (!(agent instanceof https.Agent) || agent.options.keepAlive) return agent;
  let twin = keepAlive.get(agent);
  if (!twin) {
    twin = new https.Agent({ ...agent.options, keepAlive: true, timeout: IDLE_MS });
    keepAlive.set(agent, twin);
  }
  return twin;
}

export async function requestJson(kc: KubeConfig, req: RawRequest): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeApiError(0, '', 'the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + req.path);
  for (const [k, v] of Object.entries(req.query ?? {})) {
    if (v !== undefined) url.searchParams.set(k, String(v));
  }
  const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
  const options: https.RequestOptions = {
    method: req.method,
    ...(req.signal ? { signal: req.signal } : {}),
    headers: {
      Accept: req.accept ?? 'application/json',
      // a DELETE's body (DeleteOptions) is read only with a length, not chunked
      ...(payload
        ? { 'Content-Type': req.contentType ?? 'application/json', 'Content-Length': payload.length }
        : {}),
    },
  };
  await kc.applyToHTTPSOptions(options);
  options.agent = reusing(options.agent);
  const transport = url.protocol === 'http:' ? http : https;
  return new Promise((resolve, reject) => {
    const request = transport.request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new KubeApiError(0, '', err.message, { cause: err })));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          reject(httpError(status, text));
          return;
        }
        try {
          resolve(text ? JSON.parse(text) : undefined);
        } catch (err: unknown) {
          reject(new KubeApiError(status, '', `unparsable response from ${url.pathname}`, { cause: err }));
        }
      });
    });
    request.setTimeout(req.timeoutMs ?? 30_000, () => {
      request.destroy(new Error(`no answer from the API server within ${req.timeoutMs ?? 30_000} ms`));
    });
    request.on('error', (err) => reject(new KubeApiError(0, '', err.message, { cause: err })));
    request.end(payload);
  });
}
