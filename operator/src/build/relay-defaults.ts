// What the operator's installation decides for every policy's relays, from its
// environment (the chart sets it): the relay image of a policy without spec.image, and
// how the relays' ServiceMonitors look to the Prometheus that should select them.
import type { RelayPolicy } from '../api/types.ts';
import { FORMER_DEFAULT_RELAY_IMAGES, relayImage } from '../version.ts';

export interface ServiceMonitorSettings {
  /** Labels the Prometheus' serviceMonitorSelector matches (kube-prometheus-stack: release=<its release>). */
  labels: Record<string, string>;
  /** Scrape interval, a Prometheus duration. */
  interval: string;
  scrapeTimeout?: string;
}

export interface RelayDefaults {
  /** The image of a policy without spec.image: the relay of the operator's own release. */
  image: string;
  serviceMonitor: ServiceMonitorSettings;
  /** UID (and GID, fsGroup) of the relay pods; undefined leaves it to the platform (OpenShift). */
  runAsUser: number | undefined;
  /** Secrets (in each policy's namespace) the kubelet pulls the relay image with. */
  imagePullSecrets: readonly string[];
}

export const DEFAULT_RELAY_DEFAULTS: RelayDefaults = {
  image: relayImage(),
  serviceMonitor: { labels: {}, interval: '30s' },
  runAsUser: 10001,
  imagePullSecrets: [],
};

const DURATION = /^([0-9]+(ms|s|m|h|d|w|y))+$/;
// a label name and a value as Kubernetes takes them (prefix/name, at most 63 characters each)
const LABEL_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** A malformed RELAY_* variable: the message names the variable, the field and the problem. */
export class RelayDefaultsError extends Error {
  readonly code = 'SLUICE_ERR_OPERATOR_ENV';
}

/** RELAY_RUN_AS_USER: a UID; `platform` leaves it to the platform; unset, 10001. */
function runAsUserFromEnv(raw: string | undefined): number | undefined {
  const text = raw?.trim();
  if (!text) return DEFAULT_RELAY_DEFAULTS.runAsUser;
  if (text === 'platform') return undefined;
  const uid = Number(text);
  if (!Number.isInteger(uid) || uid < 1 || uid > 2_147_483_647)
    throw new RelayDefaultsError(`RELAY_RUN_AS_USER: "${text}" is neither a non-root UID nor "platform"`);
  return uid;
}

/**
 * The defaults from the operator's environment: RELAY_IMAGE (a whole image reference;
 * default the relay of this release), RELAY_SERVICE_MONITOR (JSON {labels, interval,
 * scrapeTimeout}; default no extra labels, 30s), RELAY_RUN_AS_USER and
 * RELAY_IMAGE_PULL_SECRETS (comma-separated Secret names).
 */
export function relayDefaultsFromEnv(env: {
  RELAY_IMAGE?: string | undefined;
  RELAY_IMAGE_PULL_SECRETS?: string | undefined;
  RELAY_SERVICE_MONITOR?: string | undefined;
  RELAY_RUN_AS_USER?: string | undefined;
}): RelayDefaults {
  const image = env.RELAY_IMAGE?.trim() || DEFAULT_RELAY_DEFAULTS.image;
  if (/\s/.test(image)) throw new RelayDefaultsError(`RELAY_IMAGE: "${image}" is not an image reference`);
  const runAsUser = runAsUserFromEnv(env.RELAY_RUN_AS_USER);
  const imagePullSecrets = (env.RELAY_IMAGE_PULL_SECRETS ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  for (const name of imagePullSecrets) {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253)
      throw new RelayDefaultsError(`RELAY_IMAGE_PULL_SECRETS: "${name}" is not a Secret name`);
  }
  const text = env.RELAY_SERVICE_MONITOR?.trim();
  if (!text) return { ...DEFAULT_RELAY_DEFAULTS, image, runAsUser, imagePullSecrets };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err: unknown) {
    throw new RelayDefaultsError(`RELAY_SERVICE_MONITOR is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new RelayDefaultsError(
      'RELAY_SERVICE_MONITOR must be a JSON object {labels, interval, scrapeTimeout}',
    );
  const sm = parsed as Record<string, unknown>;
  const labels = sm.labels ?? {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels))
    throw new RelayDefaultsError('RELAY_SERVICE_MONITOR.labels must be an object of label names to values');
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL_NAME.test(k))
      throw new RelayDefaultsError(`RELAY_SERVICE_MONITOR.labels: "${k}" is not a label name`);
    if (typeof v !== 'string' || !LABEL_VALUE.test(v))
      throw new RelayDefaultsError(
        `RELAY_SERVICE_MONITOR.labels.${k}: ${JSON.stringify(v)} is not a label value`,
      );
  }
  const duration = (field: 'interval' | 'scrapeTimeout'): string | undefined => {
    const value = sm[field];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string' || !DURATION.test(value))
      throw new RelayDefaultsError(
        `RELAY_SERVICE_MONITOR.${field}: ${JSON.stringify(value)} is not a Prometheus duration such as 30s or 1m`,
      );
    return value;
  };
  const scrapeTimeout = duration('scrapeTimeout');
  return {
    image,
    runAsUser,
    imagePullSecrets,
    serviceMonitor: {
      labels: labels as Record<string, string>,
      interval: duration('interval') ?? DEFAULT_RELAY_DEFAULTS.serviceMonitor.interval,
      ...(scrapeTimeout ? { scrapeTimeout } : {}),
    },
  };
}

/** The image a policy's relay pods run: spec.image when someone chose it, else the installation's. */
export function relayImageOf(policy: RelayPolicy, defaults: RelayDefaults): string {
  const pinned = policy.spec.image;
  return pinned === undefined || FORMER_DEFAULT_RELAY_IMAGES.includes(pinned) ? defaults.image : pinned;
}
