// DATA on its way in: the smuggling defence (line ends made CRLF), the missing Date or
// Message-ID added and Bcc removed (MissingHeaders), and the size limit counted on the
// stored form; then each piece goes to the spool writer, the attachment scanner and the
// DKIM signer by direct calls. One reader of smtp-server's data stream and no stream of
// its own: a Transform and three pipes per message made linked garbage that outlived the
// message's receipt (bench/README, "Sixth pass").
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { SMTPServerDataStream } from 'smtp-server';
import { LineEndingNormaliser } from './line-endings.ts';
import type { MissingHeaders } from './missing-headers.ts';

/** Where the pieces go: the spool and the scanner may push back, the signer never does. */
export interface IntakeSinks {
  /**
   * The spool writer (SpoolWriter): false from write() means wait for drained(). It needs
   * no end: the spool's commit writes what it still holds.
   */
  writer: {
    write(piece: Buffer): boolean;
    drained(): Promise<void>;
    readonly errored: Error | null;
  };
  scanner: Writable;
  signer: { update(piece: Buffer): void; end(): void };
}

/** Settles once the scanner has drained, failed or closed (a failed sink is not waited for). */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done).off('error', done).off('close', done);
      resolve();
    };
    stream.on('drain', done).on('error', done).on('close', done);
  });
}

export class MessageIntake {
  /** Past the size limit (or smtp-server flagged the message as past it): the rest was dropped. */
  exceeded = false;
  /** Counts the bare CRs and LFs it rewrote. */
  readonly normaliser = new LineEndingNormaliser();
  readonly headers: MissingHeaders;
  readonly #source: SMTPServerDataStream;
  readonly #sinks: IntakeSinks;
  /** Bytes that may still be passed on. */
  #room: number;
  /** A sink asked to wait: the source is paused until this settles. */
  #waiting: Promise<void> | null = null;

  /**
   * room: the size limit. It applies to the stored form: bare LFs made CRLF can double a
   * body, so smtp-server's count of the bytes received is not enough.
   */
  constructor(source: SMTPServerDataStream, headers: MissingHeaders, room: number, sinks: IntakeSinks) {
    this.#source = source;
    this.headers = headers;
    this.#room = room;
    this.#sinks = sinks;
  }

  /**
   * Reads the data to its end, passing it on, then ends the scanner and the signer.
   * Rejects when the data stream fails (the client went away mid-DATA); the sinks are then
   * left as they are.
   */
  async run(): Promise<void> {
    const source = this.#source;
    const onData = (chunk: Buffer): void => {
      const wait = this.#take(chunk);
      if (wait === null) return;
      source.pause();
      this.#waiting = wait.then(() => {
        this.#waiting = null;
        source.resume();
      });
    };
    source.on('data', onData);
    try {
      await finished(source);
    } finally {
      source.off('data', onData);
    }
    if (this.#waiting) await this.#waiting;
    if (!this.exceeded) {
      const rest = this.normaliser.flushPending();
      if (rest) this.#pass(this.headers.take(rest));
      this.#pass(this.headers.end());
    }
    const { scanner, signer } = this.#sinks;
    if (!scanner.destroyed) scanner.end();
    signer.end();
  }

  #take(chunk: Buffer): Promise<void> | null {
    if (this.exceeded || this.#source.sizeExceeded) {
      this.exceeded = true;
      return null;
    }
    return this.#pass(this.headers.take(this.normaliser.normalise(chunk)));
  }

  /** Passes a piece on; a promise when a sink asked to wait. */
  #pass(piece: Buffer | null): Promise<void> | null {
    if (piece === null || this.exceeded) return null;
    this.#room -= piece.length;
    if (this.#room < 0) {
      this.exceeded = true;
      return null;
    }
    const { writer, scanner, signer } = this.#sinks;
    signer.update(piece);
    // a failed spool write is reported once the client has sent it all (receive-message.ts)
    const writerWaits = writer.errored === null && !writer.write(piece);
    const scannerWaits = !scanner.destroyed && !scanner.write(piece);
    if (writerWaits && scannerWaits) return Promise.all([writer.drained(), drained(scanner)]).then(() => {});
    if (writerWaits) return writer.drained();
    if (scannerWaits) return drained(scanner);
    return null;
  }
}
