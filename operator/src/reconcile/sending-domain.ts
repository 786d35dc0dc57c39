// The reconcile of one SendingDomain: its DKIM key Secrets (made, switched, retired,
// deleted as dkim-rotation.ts decides), a look at DNS, and the status with the records to
// publish and the conditions. The policy's reconcile reads that status to put the keys
// that DNS serves into the relay config. Writes are conditional on the version read
// (a stale cache gets Conflict and a retry), so a key is never switched twice.
import { createPrivateKey } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { type KeyStatus, type SendingDomainSpec, SendingDomainSpecSchema } from '../api/sending-domain.ts';
import type { RelayPolicy, SendingDomain } from '../api/types.ts';
import { ANNOTATIONS, generateDkimKeys, keySecret, selectorFor } from '../build/dkim-keys.ts';
import { domainsOfPolicy, keySecretsOf } from '../build/sending-domains.ts';
import { isConflict, toKubeApiError } from '../kube/api-error.ts';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { SENDING_DOMAINS, splitKey } from '../kube/resources.ts';
import { type LiveCondition, mergeConditions } from './conditions.ts';
import {
  generationOf,
  type KeyGeneration,
  planRotation,
  RETIRE_MARGIN_MS,
  removableAt,
  stateOf,
} from './dkim-rotation.ts';
import {
  checkDkim,
  checkDmarc,
  checkSpf,
  type DkimAnswer,
  type Lookup as DnsAnswer,
  type DnsLookup,
} from './dns-checks.ts';
import type { Lookup, SecretObject } from './policy-inputs.ts';
import {
  algorithmsOf,
  type DomainFacts,
  dnsRecords,
  domainConditions,
  keyRecordName,
  publicKeys,
} from './sending-domain-status.ts';
import { StatusWriter } from './status-writer.ts';

export const DEFAULT_DNS_CHECK_INTERVAL_MS = 5 * 60_000;
/** DKIM answers remembered before old ones are dropped (about two keys per domain) */
const CHECKED_LIMIT = 50_000;
/** The queue lifetime assumed while the policy is missing (the relay's default, 5 days). */
const DEFAULT_QUEUE_LIFETIME_S = 5 * 86400;

export interface SendingDomainReconcilerOptions {
  client: KubeClient;
  domains: Lookup<SendingDomain>;
  policies: Lookup<RelayPolicy>;
  /** The Secrets the operator owns, from a cache (the key Secrets among them) */
  owned: Lookup<SecretObject>;
  events: EventRecorder;
  dns: DnsLookup;
  now?: () => number;
  /** DNS is checked again this often; default 5 min */
  dnsCheckIntervalMs?: number;
  log?: { info(details: object, message: string): void };
}

export interface SendingDomainOutcome {
  changed: number;
  statusWritten: boolean;
  requeueAfterMs?: number;
}

/** Go duration (1h30m, 2160h, 90s) in milliseconds. */
export function durationMs(text: string): number {
  const unit: Record<string, number> = { h: 3600_000, m: 60_000, s: 1000 };
  let total = 0;
  for (const m of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(h|m|s)/g))
    total += Number(m[1]) * (unit[m[2] ?? 's'] ?? 0);
  return total;
}

const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());

function rsaBits(g: KeyGeneration): number {
  const pem = g.keys['rsa-sha256'];
  return pem ? (createPrivateKey(pem).asymmetricKeyDetails?.modulusLength ?? 0) : 0;
}

export class SendingDomainReconciler {
  readonly #o: SendingDomainReconcilerOptions;
  readonly #status: StatusWriter;
  readonly #now: () => number;
  /** DKIM answers of the last check, by record name and key: DNS is asked once per interval */
  readonly #checked = new Map<string, { at: number; answer: DnsAnswer<DkimAnswer> }>();

  constructor(options: SendingDomainReconcilerOptions) {
    this.#o = options;
    this.#status = new StatusWriter(options.client, SENDING_DOMAINS);
    this.#now = options.now ?? Date.now;
  }

  async reconcile(key: string): Promise<SendingDomainOutcome> {
    const { namespace, name } = splitKey(key);
    const cached = this.#o.domains.get(namespace, name);
    // gone: the garbage collector deletes the key Secrets it owned
    if (!cached || cached.metadata.deletionTimestamp) return { changed: 0, statusWritten: false };
    const domain: SendingDomain = {
      ...cached,
      spec: Value.Default(SendingDomainSpecSchema, structuredClone(cached.spec)) as SendingDomainSpec,
    };
    const { spec } = domain;
    const now = this.#now();
    const policy = this.#o.policies.get(namespace, spec.policyRef.name);
    const interval = this.#o.dnsCheckIntervalMs ?? DEFAULT_DNS_CHECK_INTERVAL_MS;
    const delegationZone = spec.dns.delegationZone ?? policy?.spec.sendingDomains?.delegationZone;
    const zone = spec.dns.mode === 'CNAME' ? delegationZone : undefined;
    const queueLifetimeS = policy?.spec.delivery?.retry?.queueLifetimeSeconds ?? DEFAULT_QUEUE_LIFETIME_S;
    const retireAfterMs = queueLifetimeS * 1000 + RETIRE_MARGIN_MS;

    const invalid: string[] = [];
    let generations = keySecretsOf(domain, this.#o.owned).flatMap((s) => {
      const g = generationOf(s);
      if (!g) invalid.push(s.metadata.name);
      return g ? [g] : [];
    });
    const published = new Set<string>();
    const answers = new Map<string, { name: string; answer: DnsAnswer<DkimAnswer> }>();
    const before = new Map((cached.status?.keys ?? []).map((k) => [k.secretName, k.published]));
    for (const g of generations) {
      if (stateOf(g) === 'Retiring') continue;
      let all = true;
      let failed = false;
      for (const k of publicKeys(g)) {
        const recordName = keyRecordName(spec.domain, k.selector);
        const answer = await this.#dkim(recordName, k.p, now, interval);
        if (k.algorithm === 'rsa-sha256') answers.set(g.secretName, { name: recordName, answer });
        if (!answer.ok) failed = true;
        else if (answer.value !== 'match') all = false;
      }
      // a failed lookup changes nothing: the key that signs goes on signing, a waiting one waits
      const served = failed ? all && stateOf(g) === 'Active' && before.get(g.secretName) === true : all;
      if (served) published.add(g.secretName);
    }

    // a damaged key Secret stops the rotation (it is kept, and status names it) until it is deleted
    const plan: ReturnType<typeof planRotation> =
      invalid.length > 0
        ? { retire: [], remove: [] }
        : planRotation({
            generations,
            published,
            now,
            rotationPeriodMs: durationMs(spec.dkim.rotationPeriod),
            retireAfterMs,
            selectors: [spec.dkim.selectors[0] ?? 'sluice1', spec.dkim.selectors[1] ?? 'sluice2'],
            algorithms: algorithmsOf(spec),
            rsaBits: spec.dkim.rsaBits,
            rsaBitsOf: rsaBits,
          });

    let changed = 0;
    const byName = new Map(generations.map((g) => [g.secretName, g]));
    const annotate = async (g: KeyGeneration, annotations: Record<string, string>) => {
      await this.#o.client.mergePatch(
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: g.secretName, namespace } } as KubeObject,
        { metadata: { annotations, resourceVersion: g.resourceVersion } },
      );
      changed++;
    };
    for (const secretName of plan.retire) {
      const g = byName.get(secretName);
      if (!g) continue;
      await annotate(g, { [ANNOTATIONS.retiringSince]: new Date(now).toISOString() });
      g.retiringSince = now;
      await this.#o.events.record(
        cached,
        'Normal',
        'DkimKeyReplaced',
        `selector ${g.selector} no longer signs; keep it published until ${iso(removableAt(g, retireAfterMs))}`,
      );
    }
    if (plan.activate) {
      const g = byName.get(plan.activate);
      if (g) {
        await annotate(g, { [ANNOTATIONS.activeSince]: new Date(now).toISOString() });
        g.activeSince = now;
        await this.#o.events.record(
          cached,
          'Normal',
          'DkimKeyActive',
          `DNS serves selector ${g.selector}; it signs now`,
        );
      }
    }
    for (const secretName of plan.remove) {
      await this.#o.client.delete('v1', 'Secret', namespace, secretName);
      changed++;
      const g = byName.get(secretName);
      await this.#o.events.record(
        cached,
        'Normal',
        'DkimKeyRemoved',
        `the replaced key of selector ${g?.selector ?? secretName} is deleted; its DNS record may go`,
      );
    }
    generations = generations.filter((g) => !plan.remove.includes(g.secretName));
    if (plan.create) {
      const created = await this.#create(domain, plan.create, now);
      if (created) {
        generations.push(created);
        changed++;
        await this.#o.events.record(
          cached,
          'Normal',
          'DkimKeyCreated',
          `new key for selector ${plan.create}; it signs once DNS serves it`,
        );
      }
    }

    const statusWritten = await this.#writeStatus(cached, domain, {
      generations,
      published,
      answers,
      policy,
      zone,
      delegationZone,
      retireAfterMs,
      nextRotation: plan.nextRotation,
      ...(plan.waiting ? { rotationWaiting: plan.waiting } : {}),
      invalid,
      now,
    });
    if (changed > 0) this.#o.log?.info({ sendingDomain: key, changed }, 'DKIM keys changed');
    const untilDue = plan.dueAt !== undefined ? Math.max(plan.dueAt - now, 1000) : interval;
    return { changed, statusWritten, requeueAfterMs: Math.min(interval, untilDue) };
  }

  forget(uid: string): void {
    this.#status.forget(uid);
  }

  async #dkim(name: string, p: string, now: number, interval: number): Promise<DnsAnswer<DkimAnswer>> {
    const cacheKey = `${name} ${p}`;
    const last = this.#checked.get(cacheKey);
    // a key that matched is asked again at the interval; one still awaited, at every reconcile
    if (last?.answer.ok && last.answer.value === 'match' && now - last.at < interval) return last.answer;
    const answer = await checkDkim(this.#o.dns, name, p);
    // keys that are gone are not asked for again: their entries go once they are old
    if (this.#checked.size >= CHECKED_LIMIT) {
      for (const [k, v] of this.#checked) if (now - v.at >= interval) this.#checked.delete(k);
    }
    this.#checked.set(cacheKey, { at: now, answer });
    return answer;
  }

  async #create(domain: SendingDomain, selector: string, now: number): Promise<KeyGeneration | undefined> {
    const { spec } = domain;
    const keys = await generateDkimKeys(spec.dkim.rsaBits, spec.dkim.ed25519);
    const secret = keySecret(domain, selector, keys, new Date(now).toISOString());
    try {
      const created = await this.#o.client.create<SecretObject>(secret as KubeObject);
      return generationOf(created);
    } catch (err: unknown) {
      // made by an earlier reconcile that the cache has not shown yet: its event brings the next one
      if (isConflict(err)) return undefined;
      throw toKubeApiError(err);
    }
  }

  async #writeStatus(
    cached: SendingDomain,
    domain: SendingDomain,
    s: {
      generations: KeyGeneration[];
      published: Set<string>;
      answers: Map<string, { name: string; answer: DnsAnswer<DkimAnswer> }>;
      policy: RelayPolicy | undefined;
      zone: string | undefined;
      delegationZone: string | undefined;
      retireAfterMs: number;
      nextRotation: number | undefined;
      rotationWaiting?: string;
      /** Key Secrets that are not valid keys */
      invalid: string[];
      now: number;
    },
  ): Promise<boolean> {
    const { spec } = domain;
    const { namespace, name } = domain.metadata;
    const gens = [...s.generations].sort((a, b) => a.createdAt - b.createdAt);
    const active = gens.filter((g) => stateOf(g) === 'Active').at(-1);
    const pending = gens.filter((g) => stateOf(g) === 'Pending').at(-1);
    const signing = active && s.published.has(active.secretName) ? active : undefined;
    const watched = signing ?? pending ?? active;
    const keys: KeyStatus[] = gens.map((g) => {
      const removable = removableAt(g, s.retireAfterMs);
      return {
        selector: g.selector,
        algorithms: Object.keys(g.keys),
        secretName: g.secretName,
        state: stateOf(g),
        createdAt: new Date(g.createdAt).toISOString(),
        ...(g.activeSince !== undefined ? { activeSince: new Date(g.activeSince).toISOString() } : {}),
        ...(g.retiringSince !== undefined ? { retiringSince: new Date(g.retiringSince).toISOString() } : {}),
        ...(removable !== undefined ? { removableAfter: new Date(removable).toISOString() } : {}),
        // a replaced key's record must stay: it is reported as published, as it was
        published: s.published.has(g.secretName) || stateOf(g) === 'Retiring',
      };
    });
    const duplicateOf = s.policy
      ? domainsOfPolicy(this.#o.domains.list(), namespace, spec.policyRef.name).duplicates.get(name)
      : undefined;
    const blocked = s.invalid.length
      ? {
          reason: 'KeySecretInvalid',
          message: `Secret ${s.invalid.join(', ')} holds no valid DKIM key (a selector annotation and PEM keys of their algorithms); it is not used and rotation waits: delete it to have a new key made`,
        }
      : !s.policy
        ? {
            reason: 'PolicyNotFound',
            message: `RelayPolicy ${spec.policyRef.name} not found in namespace ${namespace}`,
          }
        : duplicateOf
          ? {
              reason: 'DuplicateDomain',
              message: `SendingDomain ${duplicateOf} already covers ${spec.domain} for this policy; this one is not used`,
            }
          : spec.dns.mode === 'CNAME' && !s.delegationZone
            ? {
                reason: 'NoDelegationZone',
                message:
                  "CNAME mode needs spec.dns.delegationZone or the policy's spec.sendingDomains.delegationZone",
              }
            : undefined;
    const addresses = s.policy?.spec.ownIpWatch?.ips ?? [];
    const include =
      s.policy?.spec.sendingDomains?.spfInclude ??
      (addresses.length === 0 && s.policy ? `spf.${s.policy.spec.hostname}` : undefined);
    const [spf, dmarc] = await Promise.all([
      checkSpf(this.#o.dns, spec.domain, { include: include ?? '', addresses }),
      checkDmarc(this.#o.dns, spec.domain),
    ]);
    const watchedAnswer = watched && s.answers.get(watched.secretName);
    const facts: DomainFacts = {
      generation: domain.metadata.generation ?? 0,
      ...(blocked ? { blocked } : {}),
      ...(signing ? { signing: signing.selector } : {}),
      dkim: watched
        ? {
            selector: watched.selector,
            name: keyRecordName(spec.domain, selectorFor(watched.selector, 'rsa-sha256')),
            answer: watchedAnswer?.answer ?? { ok: true, value: 'missing' },
          }
        : undefined,
      ...(signing && pending
        ? { rotatingTo: { selector: pending.selector, name: keyRecordName(spec.domain, pending.selector) } }
        : {}),
      ...(s.rotationWaiting ? { rotationWaiting: s.rotationWaiting } : {}),
      spf,
      dmarc,
    };
    const live = { ...cached, status: cached.status as Record<string, unknown> | undefined };
    const current = this.#status.current(live) as { conditions?: LiveCondition[] } | undefined;
    const conditions = mergeConditions(
      current?.conditions,
      domainConditions(facts, spec.domain),
      new Date(s.now).toISOString(),
    );
    const records = dnsRecords({
      spec,
      generations: gens,
      ...(s.zone ? { delegationZone: s.zone } : {}),
      spf: { ...(include ? { include } : {}), addresses },
    });
    const status = {
      observedGeneration: domain.metadata.generation ?? 0,
      conditions,
      signingSelector: signing?.selector ?? null,
      nextRotation: iso(s.nextRotation) ?? null,
      keys,
      records,
    };
    return this.#status.write(live, status);
  }
}
