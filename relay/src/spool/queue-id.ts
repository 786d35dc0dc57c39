import { randomBytes } from 'node:crypto';

/**
 * A queue id: arrival time in base 36 (so ids sort by arrival), then 40 random bits.
 * Safe as a file name and in logs; unique across relay pods without coordination.
 */
export function newQueueId(now: number = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`.toUpperCase();
}

export const QUEUE_ID_PATTERN = /^[0-9A-Z]{9}[0-9A-F]{10}$/;
