// The config sections that protect the relay's reputation: suppression of recipients
// that bounced, and shaping of delivery per destination group.
import { Type } from '@sinclair/typebox';
import { REPLY_CLASSES } from '../delivery/reply-class.ts';

const ReplyClass = Type.Union(
  REPLY_CLASSES.map((c) => Type.Literal(c)),
  { description: 'A reply class (docs/relay.md#reply-classes)' },
);

export const SuppressionSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Refuse new mail (550 5.1.1 at RCPT) to recipients that bounced with one of classes',
    }),
    classes: Type.Array(ReplyClass, {
      default: ['invalid-recipient'],
      maxItems: 32,
      description: 'The bounce classes that suppress a recipient',
    }),
    ttlSeconds: Type.Integer({
      minimum: 60,
      maximum: 365 * 86400,
      default: 30 * 86400,
      description: 'How long a recipient stays suppressed (DELETE /suppressions/<address> lifts it earlier)',
    }),
  },
  { additionalProperties: false },
);
