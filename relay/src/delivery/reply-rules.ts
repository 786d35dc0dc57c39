// The rules that put a remote reply in a class (reply-class.ts), as data. Text rules are
// tried in order, first match wins: providers say the real reason in words and in codes
// of their own (Yahoo's [TSS04], Microsoft's S3150) under generic enhanced codes. The
// samples each rule was written for are in reply-class.test.ts; a new rule comes with a
// sample there.
import type { ReplyClass } from '../wire/reply-classes.ts';

export interface TextRule {
  class: ReplyClass;
  /** Matched against the whole reply, multi-line replies joined with spaces. */
  pattern: RegExp;
  /** Only for replies whose RFC 3463 status matches (e.g. only 4xx). */
  status?: RegExp;
}

export const TEXT_RULES: readonly TextRule[] = [
  // Throttling first: these defer and slow a destination down, whatever else they say.
  // Gmail 4.7.28 (its words mention unsolicited mail), Microsoft 4.7.500, 4.7.650, 4.7.651
  { class: 'rate-limited', pattern: /(?:)/, status: /^4\.7\.(28|500|650|651)$/ },
  // Yahoo [TS01]-[TS03], [TSS04] (https://senders.yahooinc.com/smtp-error-codes)
  { class: 'rate-limited', pattern: /\[TSS?0[1-4]\]/ },
  // Gmail 421-4.7.28, Microsoft 451 4.7.650 "temporarily rate limited due to IP reputation"
  { class: 'rate-limited', pattern: /\brate[- ]limit(ed|ing)?\b|\bRL0000\b/i },
  // Microsoft 451 4.7.500 "Server busy. Please try again later from [ip]"; the phrases
  // KumoMTA's shipped shaping.toml slows down on by default
  {
    class: 'rate-limited',
    pattern:
      /server busy\. please try again later from|temporarily deferred|receiving mail (at too high a rate|at a rate that)|too many (concurrent )?(SMTP )?(connections|messages|recipients)|unexpected volume|exceeded .*(sending|rate) (limit|quota)/i,
    status: /^4/,
  },
  { class: 'transient', pattern: /greylist|graylist/i },
  // SPF, DKIM, DMARC: Gmail and Yahoo 5.7.26 / 5.7.9 "sender is unauthenticated", Microsoft 5.7.509
  {
    class: 'auth-required',
    pattern:
      /\bDMARC\b|\bSPF\b|\bDKIM\b|unauthenticated|not authenticated|authentication information|authenticate with/i,
  },
  {
    class: 'spam-block',
    pattern:
      /blocked using|block ?list|black ?list|deny ?list|\blisted (at|in|on|by)\b|spamhaus|spamcop|barracuda|\bSORBS\b|banned sending IP|\bblocked - see\b|\[TSS09\]|permanently deferred|dnsbl|your IP address has been blocked|client host .{0,60} blocked/i,
  },
  {
    class: 'reputation',
    pattern: /reputation|traffic not accepted from this IP|not authorized to send email directly/i,
  },
  {
    class: 'spam-content',
    pattern: /\bspam\b|unsolicited|\bjunk\b|phish|virus|malware|harmful|content (was )?(rejected|filter)/i,
  },
  { class: 'mailbox-full', pattern: /quota|mailbox (is )?full|out of storage|insufficient (storage|space)/i },
  {
    class: 'inactive-mailbox',
    pattern:
      /(mailbox|account|user|recipient) (is |has been )?(disabled|inactive|deactivated|suspended|locked|closed|expired)|no longer (active|in use|available)|mailbox is disabled/i,
  },
  {
    class: 'bad-domain',
    pattern:
      /domain not found|no such domain|(DNS )?domain .{1,255} does not exist|host or domain name not found|unrouteable address/i,
  },
  {
    class: 'policy',
    pattern:
      /relay(ing)? (access )?(denied|not permitted)|not permitted to relay|local policy|policy reasons|external forwarding|not allowed to send/i,
  },
  {
    class: 'invalid-recipient',
    pattern:
      /user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient)|does not exist|doesn't exist|doesn't have an? .{1,64} account|(mailbox|user|recipient|address) not found|mailbox unavailable|invalid (recipient|mailbox|address)|recipient (address )?rejected|NoSuchUser|not our customer|no mailbox/i,
  },
  {
    class: 'message-too-large',
    pattern: /size limit|message (is )?too (big|large)|exceeds? .{0,40}size|message size/i,
  },
];

/** Failures without a remote reply to read, by their local reason (delivery-results.ts). */
export const LOCAL_REASON_CLASSES: Readonly<Record<string, ReplyClass>> = {
  null_mx: 'bad-domain',
  no_domain: 'bad-domain',
  dns_tempfail: 'routing',
  no_usable_mx: 'routing',
  connect_failed: 'routing',
  local_address: 'routing',
  tls_failed: 'tls',
  tls_required: 'tls',
  auth_failed: 'auth-required',
  smtputf8_not_offered: 'other',
  shutting_down: 'transient',
  local_error: 'transient',
  shaping: 'transient',
};

/** Enhanced status codes (RFC 3463 and the providers' own) with one meaning, when no text rule matched. */
export const STATUS_CLASSES: Readonly<Record<string, ReplyClass>> = {
  '5.1.0': 'invalid-recipient',
  '5.1.1': 'invalid-recipient',
  '5.1.3': 'invalid-recipient',
  '5.1.6': 'invalid-recipient',
  '4.1.2': 'bad-domain',
  '5.1.2': 'bad-domain',
  '5.1.10': 'bad-domain',
  '5.1.7': 'policy',
  '5.1.8': 'policy',
  '5.2.1': 'inactive-mailbox',
  '4.2.2': 'mailbox-full',
  '5.2.2': 'mailbox-full',
  '5.2.3': 'message-too-large',
  '5.3.4': 'message-too-large',
  '4.4.1': 'routing',
  '4.4.3': 'routing',
  '4.4.4': 'routing',
  '5.4.4': 'routing',
  '4.7.5': 'tls',
  '4.7.10': 'tls',
  '5.7.10': 'tls',
  // Gmail: rate limited for unsolicited mail from the IP
  '4.7.28': 'rate-limited',
  // Microsoft: server busy; rate limited due to IP reputation
  '4.7.500': 'rate-limited',
  '4.7.650': 'rate-limited',
  '4.7.651': 'rate-limited',
  // Gmail 5.7.26 (DMARC, or neither SPF nor DKIM), 5.7.27 (SPF); Microsoft 5.7.509 (DMARC)
  '5.7.23': 'auth-required',
  '5.7.26': 'auth-required',
  '5.7.27': 'auth-required',
  '5.7.509': 'auth-required',
  // Gmail: no PTR record for the sending IP
  '5.7.25': 'reputation',
  // Microsoft: access denied, traffic not accepted from this IP; banned sending IP
  '5.7.708': 'reputation',
  '5.7.750': 'reputation',
  '5.7.606': 'spam-block',
  '5.7.607': 'spam-block',
  '5.7.608': 'spam-block',
  '5.7.609': 'spam-block',
};

/** A 5xx whose exact status means nothing more, by its subject (RFC 3463 3.1 to 3.8). */
export const SUBJECT_CLASSES: Readonly<Record<string, ReplyClass>> = {
  '1': 'invalid-recipient',
  '4': 'routing',
  '7': 'policy',
};
