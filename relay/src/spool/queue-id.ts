import { randomFillSync } from 'node:crypto';

// Random bytes are drawn from the system in blocks and handed out a few at a time: one
// call per id cost ~10 µs, one per 800 ids costs nothing measurable.
const pool = Buffer.alloc(4096);
let used = pool.length;

function randomHex(bytes: number): string {
  if (used + bytes > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  used += bytes;
  return pool.toString('hex', used - bytes, used);
}

/**
 * A queue id: arrival time in base 36 (so ids sort by arrival), then 40 random bits.
 * Safe as a file name and in logs; unique across relay pods without coordination.
 */
export function newQueueId(now: number = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}${randomHex(5)}`.toUpperCase();
}

export const QUEUE_ID_PATTERN = /^[0-9A-Z]{9}[0-9A-F]{10}$/;
