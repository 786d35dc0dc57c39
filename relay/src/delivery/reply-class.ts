// Every answer a delivery attempt gets, put in one closed set of classes: the words
// metrics, logs, DSNs, usage reports, abuse detection and suppression share. The rules
// are data (reply-rules.ts), the classes themselves a wire vocabulary (wire/reply-classes.ts);
// this file only applies the rules. Pure.
import type { ReplyClass } from '../wire/reply-classes.ts';
import { LOCAL_REASON_CLASSES, STATUS_CLASSES, SUBJECT_CLASSES, TEXT_RULES } from './reply-rules.ts';

/** What classification reads of a recipient's result. */
export interface ClassifiedAnswer {
  /** The reply as the sender should read it ("550 5.1.1 no such user") or a local error. */
  response: string;
  /** RFC 3463 status (from the enhanced code, else derived from the reply code). */
  status: string;
  /** The local reason of a failure without (or before) a transaction. */
  reason?: string;
}

/**
 * The class of one answer: a local failure by its reason; a reply by the text rules first
 * (providers put the real reason in words and their own codes, e.g. Yahoo's [TSS04] under
 * a plain 4.7.0), then by its exact enhanced status code, then a 4xx is transient and a
 * 5xx goes by its subject (5.1.x addressing, 5.7.x security or policy …), else other.
 */
export function classifyReply(answer: ClassifiedAnswer): ReplyClass {
  const { response, status } = answer;
  if (/^2/.test(status)) return 'accepted';
  // a local failure has no remote words to read (remote_refused carries a reply: it does)
  if (answer.reason !== undefined) {
    const local = LOCAL_REASON_CLASSES[answer.reason];
    if (local !== undefined) return local;
  }
  const text = replyText(response);
  for (const rule of TEXT_RULES) {
    if (rule.status !== undefined && !rule.status.test(status)) continue;
    if (rule.pattern.test(text)) return rule.class;
  }
  const exact = STATUS_CLASSES[status];
  if (exact !== undefined) return exact;
  if (status.startsWith('4')) return 'transient';
  return SUBJECT_CLASSES[status.split('.')[1] ?? ''] ?? 'other';
}

/** A reply's words: the code and enhanced code that start each line of a multi-line reply removed. */
function replyText(response: string): string {
  return response.replace(/(^|\s)[245]\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3}\s+)?/g, ' ');
}

/**
 * A transport's result with its class. A throttling reply (rate-limited) defers even when
 * it came as a 5xx: slowing down and trying later is what the provider asks for, and a
 * bounce would lose the mail for a limit of ours.
 */
export function classifyResult<R extends ClassifiedAnswer & { outcome: string; class?: ReplyClass }>(
  result: R,
): R {
  const cls = classifyReply(result);
  if (cls === 'rate-limited' && result.outcome === 'bounced') {
    return { ...result, class: cls, outcome: 'deferred', status: `4${result.status.slice(1)}` };
  }
  return { ...result, class: cls };
}
