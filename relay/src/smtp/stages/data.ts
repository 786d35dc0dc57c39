// The DATA stage: a transaction with a user and recipients streams its message through
// receiveMessage (the content checks, signing, the DMARC pre-check and the durable spool);
// the transaction's span ends accepted, refused or aborted.
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { ATTR } from '../../observability/spans.ts';
import { type DataPort, receiveMessage } from '../receive-message.ts';
import type { RefusalRecorder } from '../refusals.ts';
import type { SmtpReplyError } from '../replies.ts';
import type { ConnectionState } from '../session-state.ts';
import { endTransaction, failTransaction } from '../session-trace.ts';

export class DataStage {
  readonly #port: DataPort;
  readonly #refusals: RefusalRecorder;

  constructor(port: DataPort, refusals: RefusalRecorder) {
    this.#port = port;
    this.#refusals = refusals;
  }

  /**
   * The refusal at once, or the reply text of the accepted message; that promise rejects
   * with a refusal, or with the error of a client that left mid-DATA.
   */
  data(
    state: ConnectionState | undefined,
    session: SMTPServerSession,
    stream: SMTPServerDataStream,
  ): SmtpReplyError | Promise<string> {
    if (!state?.user || !state.tx) {
      stream.resume();
      return this.#refusals.refuse(state, 'data', 'AUTH_REQUIRED');
    }
    const tx = state.tx;
    return receiveMessage({ rt: this.#port, refusals: this.#refusals, state, tx, session, stream }).then(
      (reply) => {
        endTransaction(state, 'accepted', { [ATTR.recipients]: tx.recipients.length });
        return reply;
      },
      (err: Error) => {
        // a failure that is no refusal is the client leaving mid-DATA (see receiveMessage)
        failTransaction(state, err, 'aborted', {
          [ATTR.recipients]: tx.recipients.length,
          [ATTR.reason]: 'client_disconnected',
        });
        throw err;
      },
    );
  }
}
