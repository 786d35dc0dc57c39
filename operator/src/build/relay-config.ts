// RelayPolicy → the relay's config file. Pure: what the operator read from Secrets comes
// in through `inputs`. The result is validated with the relay's own schema, so a config
// the relay would refuse never reaches a ConfigMap.

import { createHash } from 'node:crypto';
import {
  type DkimKeyConfig,
  RESTART_FIELDS,
  type RelayConfig,
  type SendersConfig,
} from '@sluice/relay/config-schema';
import { validateRelayConfig } from '@sluice/relay/config-validate';
import type { RelayPolicy } from '../api/types.ts';
import { ADMIN_PORT, HANDOFF_LISTENER, HANDOFF_PORT, INTERNAL_USER, names, PATHS } from './names.ts';

export interface ConfigInputs {
  /** Smarthost username read from its credentials Secret. */
  smarthostUsername?: string;
  /** The cluster's pod network(s): AUTH as the handoff account is accepted only from there. */
  podNetworks?: readonly string[];
  /** DKIM keys of the policy's SendingDomains that DNS serves (build/sending-domains.ts). */
  dkimKeys?: readonly DkimKeyConfig[];
  /** Signs mail from domains without a key (the provider's own SendingDomain). */
  dkimDefaultSigner?: DkimKeyConfig;
  /** The policy's SendingDomains and who may send as them. */
  senderDomains?: SendersConfig['domains'];
}

export const REDIS_PASSWORD_PATH = '/etc/sluice/redis/password';
export const SMARTHOST_PASSWORD_PATH = '/etc/sluice/smarthost/password';
export const HANDOFF_PASSWORD_PATH = `${PATHS.internalDir}/handoff-password`;
export const ADMIN_TOKEN_PATH = `${PATHS.internalDir}/admin-token`;
/** Where spec.delivery.trustedCa's key is mounted, whatever its name. */
export const TRUSTED_CA_PATH = `${PATHS.trustedCaDir}/ca.crt`;

export function buildRelayConfig(policy: RelayPolicy, inputs: ConfigInputs = {}): RelayConfig {
  const { spec, metadata } = policy;
  const n = names(policy);
  const first = spec.listeners[0];
  // the hand-off listener speaks TLS as the first listener does, with no PROXY header: a
  // draining pod connects to its peers directly, which a load balancer's header would break
  const handoff = first
    ? { name: HANDOFF_LISTENER, port: HANDOFF_PORT, tls: first.tls, proxyProtocol: false, trustedProxies: [] }
    : undefined;
  const { smarthost, trustedCa, ...delivery } = spec.delivery;
  const raw = {
    hostname: spec.hostname,
    postmaster: spec.postmaster,
    listeners: handoff ? [...spec.listeners, handoff] : spec.listeners,
    tls: {
      ...(spec.tlsSecretName
        ? { certFile: `${PATHS.tlsDir}/tls.crt`, keyFile: `${PATHS.tlsDir}/tls.key` }
        : {}),
      ...(trustedCa ? { trustedCaFile: TRUSTED_CA_PATH } : {}),
    },
    auth: spec.auth,
    limits: spec.limits,
    attachments: spec.attachments,
    dkim: {
      keys: [...(inputs.dkimKeys ?? [])],
      ...(inputs.dkimDefaultSigner ? { defaultSigner: inputs.dkimDefaultSigner } : {}),
    },
    senders: {
      headerFrom: spec.sendingDomains?.headerFrom ?? 'off',
      domains: [...(inputs.senderDomains ?? [])],
    },
    dmarcPrecheck: spec.dmarcPrecheck,
    headers: spec.headers,
    rateLimits: spec.rateLimits,
    authLockout: spec.authLockout,
    dnsbl: spec.dnsbl,
    usage: spec.usage,
    abuse: spec.abuse,
    ownIpWatch: spec.ownIpWatch,
    shaping: spec.shaping,
    suppression: spec.suppression,
    delivery: {
      ...delivery,
      ...(smarthost
        ? {
            smarthost: {
              host: smarthost.host,
              ...(smarthost.fallbackHosts ? { fallbackHosts: smarthost.fallbackHosts } : {}),
              port: smarthost.port,
              tls: smarthost.tls,
              rejectUnauthorized: smarthost.rejectUnauthorized,
              ...(smarthost.credentialsSecretRef && inputs.smarthostUsername
                ? { username: inputs.smarthostUsername, passwordFile: SMARTHOST_PASSWORD_PATH }
                : {}),
            },
          }
        : {}),
    },
    drain: {
      shutdownDelaySeconds: spec.rollout.shutdownDelaySeconds,
      deadlineSeconds: spec.drainDeadlineSeconds,
      ...(handoff
        ? {
            handoff: {
              host: `${n.headlessService}.${metadata.namespace}.svc`,
              port: handoff.port,
              tls: handoff.tls,
              username: INTERNAL_USER,
              passwordFile: HANDOFF_PASSWORD_PATH,
              ...(inputs.podNetworks ? { fromNetworks: [...inputs.podNetworks] } : {}),
            },
          }
        : {}),
    },
    state: spec.redis
      ? {
          backend: 'redis',
          namespace: `${metadata.namespace}:${metadata.name}`,
          onSharedStateDown: spec.redis.onDown,
          redis: {
            mode: spec.redis.mode,
            nodes: spec.redis.nodes,
            ...(spec.redis.sentinelName ? { sentinelName: spec.redis.sentinelName } : {}),
            ...(spec.redis.username ? { username: spec.redis.username } : {}),
            ...(spec.redis.passwordSecretRef ? { passwordFile: REDIS_PASSWORD_PATH } : {}),
            tls: spec.redis.tls,
            db: spec.redis.db,
            commandTimeoutMs: spec.redis.commandTimeoutMs,
          },
        }
      : { backend: 'memory', namespace: `${metadata.namespace}:${metadata.name}` },
    spoolDir: PATHS.spool,
    spool: { reserveMegabytes: spec.spool.reserveMegabytes },
    stateDir: PATHS.state,
    usersFile: PATHS.users,
    // every interface, IPv4 and IPv6: the pod's address in any cluster network family
    admin: { address: '::', port: ADMIN_PORT, tokenFile: ADMIN_TOKEN_PATH },
    log: { level: spec.logLevel },
    workers: spec.workers === 'auto' ? 'auto' : Number(spec.workers),
  };
  return validateRelayConfig(raw, `RelayPolicy ${metadata.namespace}/${metadata.name}`);
}

/**
 * Hash of what the relay applies only on restart (and of the TLS Secret's version):
 * it goes into the pod template, so exactly those changes roll the pods.
 */
export function restartHash(config: RelayConfig, tlsVersion = ''): string {
  const picked = Object.fromEntries(RESTART_FIELDS.map((f) => [f, config[f]]));
  return createHash('sha256').update(JSON.stringify(picked)).update(tlsVersion).digest('hex').slice(0, 16);
}
