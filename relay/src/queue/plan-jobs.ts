// What one delivery attempt of a message sends: its open recipients, grouped into one job
// per destination domain (direct mode, one MX conversation each) or one job for the
// smarthost. Pure.
import type { RelayConfig } from '../config/schema.ts';
import type { DeliveryJob } from '../delivery/types.ts';
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
    ...(envelope.smtpUtf8 ? { smtpUtf8: envelope.smtpUtf8 } : {}),
  };
  if (delivery.mode === 'smarthost') {
    return [{ ...base, recipients: open, domain: delivery.smarthost?.host ?? '' }];
  }
  const byDomain = new Map<string, string[]>();
  for (const address of open) {
    const domain = domainOf(address);
    const list = byDomain.get(domain);
    if (list) list.push(address);
    else byDomain.set(domain, [address]);
  }
  return [...byDomain].map(([domain, recipients]) => ({ ...base, recipients, domain }));
}
