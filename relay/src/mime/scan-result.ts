// The verdict every scanner gives (the message scan, the zip and uuencode readers inside
// it), in a module of its own so the nested scanners need not import the one that runs them.
import type { MimeBound } from './splitter.ts';

export type ScanResult =
  | { kind: 'clean' }
  | { kind: 'blocked'; filename: string; extension: string }
  | { kind: 'malformed'; detail: string }
  /** Over one of the MimeLimits. */
  | { kind: 'over-limit'; bound: MimeBound; limit: number };
