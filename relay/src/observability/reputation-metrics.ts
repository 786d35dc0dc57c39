// Metrics of what remote servers answer and what the relay does about it: delivery
// outcomes by reply class. Labels come from closed lists (the reply classes); which
// recipient or user is in the log line, never in a label.
import { Counter, type Registry } from 'prom-client';
import { REPLY_CLASSES } from '../delivery/reply-class.ts';

const RESULTS = ['delivered', 'deferred', 'bounced'] as const;

export class ReputationMetrics {
  readonly outcomesTotal: Counter<'result' | 'class'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.outcomesTotal = new Counter({
      name: 'sluice_delivery_outcomes_total',
      help: 'Delivery attempts per recipient by result (delivered, deferred, bounced) and class of the answer (invalid-recipient, rate-limited, … see docs/relay.md)',
      labelNames: ['result', 'class'],
      registers,
    });
    for (const result of RESULTS) {
      for (const cls of REPLY_CLASSES) this.outcomesTotal.inc({ result, class: cls }, 0);
    }
  }

  outcome(result: string, cls: string): void {
    this.outcomesTotal.inc({ result, class: cls });
  }
}
