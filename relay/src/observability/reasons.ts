// The closed list of reason labels: every refusal reply in the reply table
// (smtp/replies.ts) carries one, and the rejection metrics count by it. Kept apart from
// both so that metrics need not reach into the SMTP front.

export const REASONS = [
  'accepted',
  'auth_required',
  'auth_failed',
  'auth_suspended',
  'auth_tempfail',
  'sender_not_allowed',
  'header_from_missing',
  'header_sender_not_allowed',
  'dmarc_would_fail',
  'message_too_big',
  'too_many_recipients',
  'blocked_attachment',
  'malformed_message',
  'header_too_big',
  'mime_too_complex',
  'too_many_connections',
  'too_many_connections_ip',
  'spool_error',
  'insufficient_storage',
  'shutting_down',
  'dnsbl_listed',
  'dnsbl_tempfail',
  'rate_limited',
  'recipient_suppressed',
  'auth_locked_out',
  'state_unavailable',
  'client_disconnected',
  'timeout',
  'protocol_error',
] as const;
export type Reason = (typeof REASONS)[number];
