// Best-effort Events about the operator's objects: a failed Event is logged, never a
// reason to fail a reconcile.
import type { KubeClient, KubeObject } from './client.ts';

export interface EventLogger {
  warn(details: object, message: string): void;
}

export class EventRecorder {
  readonly #client: KubeClient;
  readonly #log: EventLogger | undefined;

  constructor(client: KubeClient, log?: EventLogger) {
    this.#client = client;
    this.#log = log;
  }

  async record(
    about: KubeObject,
    type: 'Normal' | 'Warning',
    reason: string,
    note: string,
    action = 'Reconcile',
  ): Promise<void> {
    const { name, namespace = '', uid } = about.metadata;
    try {
      await this.#client.createEvent({
        regarding: {
          apiVersion: about.apiVersion ?? '',
          kind: about.kind ?? '',
          name,
          namespace,
          ...(uid ? { uid } : {}),
        },
        type,
        reason,
        note,
        action,
      });
    } catch (err: unknown) {
      this.#log?.warn(
        { object: `${namespace}/${name}`, reason, err: String(err) },
        'could not record an Event',
      );
    }
  }
}
