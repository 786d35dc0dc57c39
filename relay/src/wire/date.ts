// Dates as they are written in message headers (Received:, Date:, DSN fields).

/** RFC 5322 3.3 date-time, in UTC. */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}
