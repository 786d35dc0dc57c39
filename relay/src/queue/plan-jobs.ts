// What one delivery attempt of a message sends: its open recipients, grouped into one job
// per destination domain (direct mode, one MX conversation each) or one job for the
// smarthost. Pure.
import type { RelayConfig } from '../config/schema.ts';
import type { DeliveryJob, JobDsn } from '../delivery/types.ts';
import type { SpooledEnvelope } from '../spool/envelope.ts';
import { isOpen } from './outcomes.ts';

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** The jobs of one attempt: open recipients by domain (direct), or all to the smarthost. */
export function planJobs(
  envelope: SpooledEnvelope,
  delivery: RelayConfig['delivery'],
  bodyPath: string,
): DeliveryJob[] {
  const open = [...new Set(envelope.recipients.filter(isOpen).map((r) => r.address))];
  if (open.length === 0) return [];
  const base = {
    queueId: envelope.queueId,
    sender: envelope.sender,
    bodyPath,
    size: envelope.size,
    crlfOnly: envelope.crlfOnly === true,
    ...(envelope.headerPrefix ? { headerPrefix: envelope.headerPrefix } : {}),
    ...(envelope.smtpUtf8 ? { smtpUtf8: envelope.smtpUtf8 } : {}),
  };
  if (delivery.mode === 'smarthost') {
    const host = delivery.smarthost?.host ?? '';
    return [{ ...base, recipients: open, domain: host, ...jobDsn(envelope, open) }];
  }
  const byDomain = new Map<string, string[]>();
  for (const address of open) {
    const domain = domainOf(address);
    const list = byDomain.get(domain);
    if (list) list.push(address);
    else byDomain.set(domain, [address]);
  }
  return [...byDomain].map(([domain, recipients]) => ({
    ...base,
    recipients,
    domain,
    ...jobDsn(envelope, recipients),
  }));
}

/**
 * The client's DSN request for these of its recipients, when it made one (RET, ENVID, or
 * NOTIFY/ORCPT on one of them).
 */
export function jobDsn(envelope: SpooledEnvelope, addresses: readonly string[]): { dsn?: JobDsn } {
  const wanted = new Set(addresses);
  const recipients: JobDsn['recipients'] = {};
  for (const r of envelope.recipients) {
    if (!wanted.has(r.address) || (r.notify === undefined && r.orcpt === undefined)) continue;
    recipients[r.address] = {
      ...(r.notify ? { notify: r.notify } : {}),
      ...(r.orcpt !== undefined ? { orcpt: r.orcpt } : {}),
    };
  }
  const any =
    envelope.ret !== undefined || envelope.envid !== undefined || Object.keys(recipients).length > 0;
  if (!any) return {};
  return {
    dsn: {
      ...(envelope.ret ? { ret: envelope.ret } : {}),
      ...(envelope.envid !== undefined ? { envid: envelope.envid } : {}),
      recipients,
    },
  };
}
