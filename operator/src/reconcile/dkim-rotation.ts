// DKIM key rotation as a pure decision over a SendingDomain's key Secrets. The Secrets
// are the record of the keys' lives (their annotations say when each was made, began to
// sign, was replaced), so a restarted operator carries on where it was.
//
//   Pending ──DNS serves it──► Active ──a newer key is served──► Retiring ──removableAt──► deleted
//
// A key signs only once DNS serves it; a new key is made `rotationPeriod` after the
// active one began to sign, under the other of the two selectors; the replaced key
// stays (and must stay published) for the queue lifetime plus a margin after it last
// signed, because queued mail signed with it is still being delivered and verified.

import { createPrivateKey } from 'node:crypto';
import { ANNOTATIONS, type DkimAlgorithm, keyFile } from '../build/dkim-keys.ts';
import type { SecretObject } from './policy-inputs.ts';
import { secretValue } from './policy-inputs.ts';

/** Added to the queue lifetime before a replaced key may leave DNS: late deliveries and re-verification. */
export const RETIRE_MARGIN_MS = 24 * 3600_000;

export interface KeyGeneration {
  selector: string;
  secretName: string;
  /** Resource version of the Secret as read (a patch on it is conditional on it) */
  resourceVersion?: string;
  /** PEM private keys by algorithm */
  keys: Partial<Record<DkimAlgorithm, string>>;
  createdAt: number;
  activeSince?: number;
  retiringSince?: number;
}

const time = (value: string | undefined): number | undefined => {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
};

/** Whether `pem` is a private key of the algorithm's type. */
function fits(pem: string, type: 'rsa' | 'ed25519'): boolean {
  try {
    return createPrivateKey(pem).asymmetricKeyType === type;
  } catch {
    return false;
  }
}

/**
 * A key Secret as a generation; undefined when it is not one: no selector annotation, no
 * RSA key, or a key that does not parse as its algorithm's (a hand edit).
 */
export function generationOf(secret: SecretObject): KeyGeneration | undefined {
  const a = (secret.metadata as { annotations?: Record<string, string> }).annotations ?? {};
  const selector = a[ANNOTATIONS.selector];
  const rsa = secretValue(secret, keyFile('rsa-sha256'));
  if (!selector || !rsa || !fits(rsa, 'rsa')) return undefined;
  const ed = secretValue(secret, keyFile('ed25519-sha256'));
  if (ed !== undefined && !fits(ed, 'ed25519')) return undefined;
  const activeSince = time(a[ANNOTATIONS.activeSince]);
  const retiringSince = time(a[ANNOTATIONS.retiringSince]);
  return {
    selector,
    secretName: secret.metadata.name,
    ...(secret.metadata.resourceVersion ? { resourceVersion: secret.metadata.resourceVersion } : {}),
    keys: { 'rsa-sha256': rsa, ...(ed ? { 'ed25519-sha256': ed } : {}) },
    createdAt: time(a[ANNOTATIONS.createdAt]) ?? 0,
    ...(activeSince !== undefined ? { activeSince } : {}),
    ...(retiringSince !== undefined ? { retiringSince } : {}),
  };
}

export type KeyState = 'Pending' | 'Active' | 'Retiring';

export function stateOf(g: KeyGeneration): KeyState {
  if (g.retiringSince !== undefined) return 'Retiring';
  return g.activeSince !== undefined ? 'Active' : 'Pending';
}

export interface RotationInput {
  generations: readonly KeyGeneration[];
  /** Whether DNS serves every key of a generation (by Secret name) */
  published: ReadonlySet<string>;
  now: number;
  rotationPeriodMs: number;
  /** How long a replaced key stays: the queue lifetime plus RETIRE_MARGIN_MS */
  retireAfterMs: number;
  selectors: readonly [string, string];
  /** The algorithms the spec asks for: a key without them is replaced at once */
  algorithms: readonly DkimAlgorithm[];
  rsaBits: number;
  /** RSA modulus length of a generation's key */
  rsaBitsOf: (g: KeyGeneration) => number;
}

export interface RotationPlan {
  /** Make a new key under this selector */
  create?: string;
  /** Secret names: begin to sign / stop signing (replaced) / delete */
  activate?: string;
  retire: string[];
  remove: string[];
  /** When the active key is due to be replaced */
  nextRotation?: number;
  /** When something is next due (a rotation, a removal) */
  dueAt?: number;
  /** Why no new key is made although one is due */
  waiting?: string;
}

export function removableAt(g: KeyGeneration, retireAfterMs: number): number | undefined {
  return g.retiringSince === undefined ? undefined : g.retiringSince + retireAfterMs;
}

function matchesSpec(g: KeyGeneration, input: RotationInput): boolean {
  const have = Object.keys(g.keys).sort().join(',');
  return (
    have === [...input.algorithms].sort().join(',') &&
    input.selectors.includes(g.selector) &&
    input.rsaBitsOf(g) === input.rsaBits
  );
}

export function planRotation(input: RotationInput): RotationPlan {
  const { now } = input;
  const plan: RotationPlan = { retire: [], remove: [] };
  const byAge = [...input.generations].sort((a, b) => a.createdAt - b.createdAt);
  const retiring = byAge.filter((g) => stateOf(g) === 'Retiring');
  const active = byAge.filter((g) => stateOf(g) === 'Active');
  const pending = byAge.filter((g) => stateOf(g) === 'Pending');
  const due: number[] = [];

  for (const g of retiring) {
    const at = removableAt(g, input.retireAfterMs) ?? now;
    if (now >= at) plan.remove.push(g.secretName);
    else due.push(at);
  }

  let current = active.at(-1);
  // more than one active key (an interrupted switch): the newest signs, the others retire
  for (const g of active.slice(0, -1)) plan.retire.push(g.secretName);

  const newest = pending.at(-1);
  if (newest && input.published.has(newest.secretName)) {
    plan.activate = newest.secretName;
    if (current) plan.retire.push(current.secretName);
    current = { ...newest, activeSince: now };
  }

  if (!current && pending.length === 0) {
    plan.create = input.selectors[0];
    return finish(plan, due);
  }
  if (current) {
    const next = current.activeSince === undefined ? now : current.activeSince + input.rotationPeriodMs;
    // a key that no longer fits the spec (algorithms, size, selectors) is replaced now
    plan.nextRotation = matchesSpec(current, input) ? next : Math.min(next, now);
    const inProgress = pending.length > 0 && plan.activate === undefined;
    if (!inProgress && now >= plan.nextRotation) {
      const selector = input.selectors.find((s) => s !== current?.selector) ?? input.selectors[0];
      const holder = byAge.find((g) => g.selector === selector && !plan.remove.includes(g.secretName));
      if (!holder) plan.create = selector;
      else {
        const at = removableAt(holder, input.retireAfterMs);
        plan.waiting = `selector ${selector} is still held by the replaced key ${holder.secretName}${
          at !== undefined ? ` until ${new Date(at).toISOString()}` : ''
        }`;
      }
    } else if (!inProgress) {
      due.push(plan.nextRotation);
    }
  }
  return finish(plan, due);
}

function finish(plan: RotationPlan, due: number[]): RotationPlan {
  if (due.length > 0) plan.dueAt = Math.min(...due);
  return plan;
}
