// Destination groups and what a throttling reply does to them, as data.
//
// The groups and their limits are KumoMTA's shipped shaping
// (KumoCorp/kumomta, assets/policy-extras/shaping.toml): "default" 10 connections, 100 new
// connections a minute, 100 messages per connection, 100 messages a second; Google (.google.com, .googlemail.com)
// and Microsoft (.olc.protection.outlook.com, .mail.protection.outlook.com, .mx.microsoft)
// 5 connections, 50 per connection; Yahoo (.yahoodns.net) 20 per connection; Apple
// (.icloud.com) 10 connections, 5 per connection. KumoMTA counts its provider limits per
// MTA node; Sluice counts them for all relays of a policy together, which is what the
// providers see of one set of egress addresses.
import type { ReplyClass } from '../wire/reply-classes.ts';

export interface ShapingGroup {
  name: string;
  mxSuffixes: readonly string[];
  connections?: number;
  connectionsPerMinute?: number;
  messagesPerConnection?: number;
  messagesPerSecond?: number;
}

export const DEFAULT_SHAPING_GROUPS: readonly ShapingGroup[] = [
  {
    name: 'google',
    mxSuffixes: ['.google.com', '.googlemail.com'],
    connections: 5,
    messagesPerConnection: 50,
  },
  { name: 'outlook', mxSuffixes: ['.olc.protection.outlook.com'], connections: 5, messagesPerConnection: 50 },
  {
    name: 'office365',
    mxSuffixes: ['.mail.protection.outlook.com', '.mx.microsoft'],
    connections: 5,
    messagesPerConnection: 50,
  },
  { name: 'yahoo', mxSuffixes: ['.yahoodns.net'], messagesPerConnection: 20 },
  { name: 'apple', mxSuffixes: ['.icloud.com'], connections: 10, messagesPerConnection: 5 },
];

/** The group of destinations no other group matches. */
export const DEFAULT_GROUP = 'default';

export type ThrottleAction = 'slow' | 'suspend';

export interface ThrottleRule {
  /** Only for these groups (absent: every group). */
  groups?: readonly string[];
  /** Replies of this class … */
  class?: ReplyClass;
  /** … or whose text matches. */
  pattern?: RegExp;
  /** slow: 1 connection and 1 message a minute; suspend: nothing is sent to the group. */
  action: ThrottleAction;
  /** How long (absent: shaping.slowdownSeconds). */
  seconds?: number;
}

/** First match wins. */
export const THROTTLE_RULES: readonly ThrottleRule[] = [
  // KumoMTA's shaping.toml: Yahoo's [TSS04] suspends the provider for 2 hours
  { groups: ['yahoo'], pattern: /\[TSS?04\]/, action: 'suspend', seconds: 7200 },
  // KumoMTA's "default" automation: 1 connection, 1 message a minute, for 90 minutes
  { class: 'rate-limited', action: 'slow' },
];

/** The limits of a slowed-down group, on every relay together. */
export const SLOW_LIMITS = { connections: 1, messagesPerSecond: 1 / 60 } as const;
