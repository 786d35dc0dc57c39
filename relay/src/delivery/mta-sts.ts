// MTA-STS (RFC 8461) policies of destination domains, for direct delivery, kept in the
// process and in the shared state (one fetch serves every pod). mailauth reads
// the _mta-sts TXT record and parses the policy file; the fetch is here because mailauth's
// always goes to port 443 with the system CAs and its cache check is inverted (a policy
// whose id is unchanged and not yet expired is fetched again): here a policy is kept until
// its max_age runs out, and fetched again as soon as the TXT id changes (RFC 8461 5.1).
// The fetch follows no redirect (RFC 8461 3.3), reads at most 64 KiB, and connects only
// to an address the destination policy allows.
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { LRUCache } from 'lru-cache';
import { parsePolicy, resolvePolicy } from 'mailauth/lib/mta-sts.js';
import { SluiceError } from '../errors.ts';
import type { StateStore } from '../state/store.ts';

export interface MtaStsPolicy {
  /** The TXT record's id the policy was fetched under; '' for "no policy". */
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  /** MX patterns: host names, or *.domain for any one label under it. */
  mx: readonly string[];
  /** When it stops being valid (ms since the epoch). */
  expires: number;
}

export const NO_POLICY: MtaStsPolicy = { id: '', mode: 'none', mx: [], expires: 0 };

/** RFC 8461 3.3: senders may limit the policy body; 64 KiB is the limit it gives as an example. */
const MAX_POLICY_BYTES = 64 * 1024;
const PATH = '/.well-known/mta-sts.txt';

export interface MtaStsOptions {
  /** DNS servers ('ip', 'ip:port'); empty uses the system resolver's. */
  servers: readonly string[];
  timeoutMs: number;
  /** CAs that verify the policy host's certificate (undefined: the system's). */
  ca?: string[] | undefined;
  /** Whether an address may be connected to (the destination policy of delivery). */
  allowed(address: string): boolean;
  /** The policy host's HTTPS port: 443, which RFC 8461 fixes; tests serve elsewhere. */
  port?: number;
  now?: () => number;
  maxPolicies?: number;
  /** The shared state: a policy one pod fetched serves every pod until it expires. */
  shared?: Pick<StateStore, 'getCache' | 'setCache'> | undefined;
}

/** RFC 8461 4.1: a pattern "*.example.com" matches one leftmost label, nothing deeper. */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((raw) => {
    const pattern = raw.toLowerCase().replace(/\.$/, '');
    if (!pattern.startsWith('*.')) return name === pattern;
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
  });
}

/** What MTA-STS came to for one connection attempt to an MX host of a domain with a policy. */
export interface MtaStsOutcome {
  mode: 'enforce' | 'testing';
  /** enforced: verified TLS to a matching MX; failed: enforce deferred; testing_*: delivered, checked. */
  result: 'enforced' | 'failed' | 'testing_ok' | 'testing_failed';
}

/** Under a testing policy: what enforce would have refused about a session, or undefined. */
export function testingProblem(
  remoteHost: string,
  tls: { authorized: boolean; error?: string } | undefined,
  policy: MtaStsPolicy,
): string | undefined {
  if (!mxMatches(remoteHost, policy.mx)) return 'MX host does not match the policy';
  if (!tls) return 'no TLS';
  return tls.authorized ? undefined : `certificate: ${tls.error}`;
}

/** The system CAs and those of `file` (tls.trustedCaFile); a config error when it cannot be read. */
export function readCaFile(file: string): string[] {
  try {
    return [...rootCertificates, readFileSync(file, 'utf8')];
  } catch (err: unknown) {
    throw new SluiceError(
      'SLUICE_ERR_CONFIG_INVALID',
      `tls.trustedCaFile: cannot read ${file}: ${(err as Error).message}`,
    );
  }
}

export class MtaStsPolicies {
  readonly #resolver: Resolver;
  readonly #options: MtaStsOptions;
  readonly #now: () => number;
  readonly #cache: LRUCache<string, MtaStsPolicy>;

  constructor(options: MtaStsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#resolver = new Resolver({ timeout: options.timeoutMs, tries: 1 });
    if (options.servers.length > 0) this.#resolver.setServers([...options.servers]);
    this.#cache = new LRUCache({ max: options.maxPolicies ?? 10_000 });
  }

  /**
   * The policy in force for `domain`: a cached one while it is valid and its id is still
   * the one published, else the one fetched now; NO_POLICY when there is none. A failed
   * lookup or fetch keeps a cached policy (RFC 8461 5.1) and never throws.
   */
  async policyFor(domain: string): Promise<{ policy: MtaStsPolicy; error?: string }> {
    const key = domain.toLowerCase();
    const cached = this.#cache.get(key) ?? (await this.#readShared(key));
    const valid = cached && cached.expires > this.#now() ? cached : undefined;
    let id: string | false;
    try {
      id = await resolvePolicy(key, {
        resolver: (name, type) => this.#resolver.resolve(name, type) as Promise<string[][]>,
      });
    } catch (err: unknown) {
      return { policy: valid ?? NO_POLICY, error: `_mta-sts.${key} TXT: ${(err as Error).message}` };
    }
    // no record: a policy still cached stays in force until it expires (RFC 8461 5.1)
    if (id === false) return { policy: valid ?? NO_POLICY };
    if (valid && valid.id === id) return { policy: valid };
    try {
      const parsed = parsePolicy(await this.#fetch(key));
      const policy: MtaStsPolicy = {
        id,
        mode: parsed.mode,
        mx: parsed.mx ?? [],
        expires: this.#now() + (parsed.maxAge ?? 0) * 1000,
      };
      this.#cache.set(key, policy);
      const ttlMs = policy.expires - this.#now();
      if (ttlMs > 0) {
        await this.#options.shared
          ?.setCache(`mta-sts:${key}`, JSON.stringify(policy), ttlMs)
          .catch(() => undefined);
      }
      return { policy };
    } catch (err: unknown) {
      return {
        policy: valid ?? NO_POLICY,
        error: `https://mta-sts.${key}${PATH}: ${(err as Error).message}`,
      };
    }
  }

  /** A policy another pod fetched, or undefined (also when the shared state cannot be read). */
  async #readShared(key: string): Promise<MtaStsPolicy | undefined> {
    const kept = await this.#options.shared?.getCache(`mta-sts:${key}`).catch(() => null);
    if (!kept) return undefined;
    try {
      const policy = JSON.parse(kept) as MtaStsPolicy;
      this.#cache.set(key, policy);
      return policy;
    } catch {
      return undefined;
    }
  }

  #fetch(domain: string): Promise<Buffer> {
    const host = `mta-sts.${domain}`;
    // the policy host's address comes from the configured resolvers, and must be one
    // delivery may connect to (no fetching from the provider's own network)
    const lookup: LookupFunction = (hostname, options, callback) => {
      this.#resolver.resolve4(hostname).then(
        (addresses) => {
          const address = addresses.find((a) => this.#options.allowed(a));
          if (address === undefined) {
            const err: NodeJS.ErrnoException = new Error(
              `${hostname} has no address delivery may connect to`,
            );
            err.code = 'ENOTFOUND';
            callback(err, '', 4);
          } else if (options.all) {
            // net's autoSelectFamily asks for every address
            (callback as unknown as (e: null, all: { address: string; family: number }[]) => void)(null, [
              { address, family: 4 },
            ]);
          } else callback(null, address, 4);
        },
        (err: NodeJS.ErrnoException) => callback(err, '', 4),
      );
    };
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host,
          port: this.#options.port ?? 443,
          path: PATH,
          method: 'GET',
          servername: host,
          lookup,
          timeout: this.#options.timeoutMs,
          ...(this.#options.ca ? { ca: this.#options.ca } : {}),
          // no agent: a policy host is asked once per max_age, a kept-alive socket is waste
          agent: false,
        },
        (res) => {
          // RFC 8461 3.3: a redirect is not followed; only a 200 is a policy
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`HTTP ${res.statusCode}`));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_POLICY_BYTES) {
              req.destroy(new Error(`policy larger than ${MAX_POLICY_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.#options.timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }
}
