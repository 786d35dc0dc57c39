import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { SMTPServerDataStream } from 'smtp-server';
import { MessageIntake } from './message-intake.ts';
import { MissingHeaders } from './missing-headers.ts';

/** smtp-server's data stream: a PassThrough with its size flag. */
function dataStream(): SMTPServerDataStream {
  return Object.assign(new PassThrough(), { byteLength: 0, sizeExceeded: false }) as SMTPServerDataStream;
}

function headers(): MissingHeaders {
  return new MissingHeaders({ date: () => 'Sun, 6 Dec 2026 18:00:00 +0000', messageId: () => '<id@relay>' });
}

/**
 * Stands in for the spool writer (SpoolWriter's write/drained/errored), whose file
 * writes cannot be slowed or failed on a real disk here: it "writes" each batch of 1 KB in
 * 2 ms, asks the caller to wait while a batch is behind one in flight, and can fail.
 */
class SlowWriter {
  readonly got: Buffer[] = [];
  mostPending = 0;
  errored: Error | null = null;
  #pendingBytes = 0;
  #inFlight: Promise<void> | null = null;
  #batches = 0;
  readonly #failAfter: number;

  constructor(options: { failAfter?: number } = {}) {
    this.#failAfter = options.failAfter ?? Number.POSITIVE_INFINITY;
  }

  write(piece: Buffer): boolean {
    if (this.errored !== null) return true;
    this.got.push(piece);
    this.#pendingBytes += piece.length;
    this.mostPending = Math.max(this.mostPending, this.#pendingBytes);
    this.#writeIfDue();
    return this.#inFlight === null || this.#pendingBytes < 1024;
  }

  drained(): Promise<void> {
    return this.#inFlight ?? Promise.resolve();
  }

  #writeIfDue(): void {
    if (this.#inFlight !== null || this.#pendingBytes < 1024) return;
    this.#pendingBytes = 0;
    this.#inFlight = new Promise<void>((resolve) => setTimeout(resolve, 2)).then(() => {
      this.#inFlight = null;
      if (++this.#batches >= this.#failAfter) this.errored = new Error('disk full');
      else this.#writeIfDue();
    });
  }
}

function fastSink(): Writable & { got: Buffer[] } {
  const got: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      got.push(chunk);
      callback();
    },
  });
  return Object.assign(sink, { got });
}

function recordingSigner(): { update(piece: Buffer): void; end(): void; got: Buffer[]; ended: boolean } {
  const got: Buffer[] = [];
  return {
    got,
    ended: false,
    update(piece) {
      got.push(piece);
    },
    end() {
      this.ended = true;
    },
  };
}

const HEADER = 'From: a@example.com\r\nDate: x\r\nMessage-ID: <m@x>\r\n\r\n';

describe('MessageIntake', () => {
  it('passes every byte to all three sinks in order, and holds the data while a sink is behind', async () => {
    const source = dataStream();
    const writer = new SlowWriter();
    const scanner = fastSink();
    const signer = recordingSigner();
    const intake = new MessageIntake(source, headers(), 10_000_000, { writer, scanner, signer });
    const running = intake.run();
    const line = `${'x'.repeat(78)}\r\n`;
    const message = `${HEADER}${line.repeat(8000)}`; // 640 KB in 4 KB pieces
    // the source's own buffers (64 KB each way) must fill up while the writer is slow: what
    // the client sends waits in smtp-server (and so in the socket), not in the relay's memory
    let refused = 0;
    for (let i = 0; i < message.length; i += 4096) {
      if (!source.write(Buffer.from(message.slice(i, i + 4096)))) {
        refused++;
        await new Promise((resolve) => source.once('drain', resolve));
      }
    }
    source.end();
    await running;
    const expected = message;
    assert.ok(refused > 0, 'the source was told to wait');
    assert.ok(writer.mostPending <= 1024 + 4096, `the writer held ${writer.mostPending} bytes at most`);
    assert.equal(Buffer.concat(writer.got).toString(), expected);
    assert.equal(Buffer.concat(scanner.got).toString(), expected);
    assert.equal(Buffer.concat(signer.got).toString(), expected);
    assert.equal(signer.ended, true);
  });

  it('goes on to the end when the spool write fails, so the client can be told', async () => {
    const source = dataStream();
    const writer = new SlowWriter({ failAfter: 2 });
    const scanner = fastSink();
    const signer = recordingSigner();
    const intake = new MessageIntake(source, headers(), 10_000_000, { writer, scanner, signer });
    const running = intake.run();
    const piece = Buffer.from(`${'y'.repeat(4094)}\r\n`);
    for (let i = 0; i < 40; i++) {
      if (!source.write(piece)) await new Promise((resolve) => source.once('drain', resolve));
    }
    source.end();
    await running;
    assert.equal(writer.errored?.message, 'disk full');
    assert.equal(Buffer.concat(scanner.got).length, 40 * piece.length, 'the scanner still saw it all');
    assert.equal(signer.ended, true);
  });

  it('drops the rest once past the limit, counting the stored form', async () => {
    const source = dataStream();
    const writer = new SlowWriter();
    const scanner = fastSink();
    const signer = recordingSigner();
    // bare LFs become CRLF: the second piece's 40 lines are 360 bytes received, 400 stored
    const first = `${HEADER}${'12345678\r\n'.repeat(20)}`;
    const intake = new MessageIntake(source, headers(), first.length + 380, { writer, scanner, signer });
    const running = intake.run();
    source.write(Buffer.from(first));
    source.end(Buffer.from('12345678\n'.repeat(40)));
    await running;
    assert.equal(intake.exceeded, true);
    assert.equal(Buffer.concat(writer.got).toString(), first, 'only what fitted was passed on');
    assert.equal(Buffer.concat(scanner.got).toString(), first);
    assert.equal(intake.normaliser.bareLf, 40);
  });

  it('rejects when the client goes away mid-DATA', async () => {
    const source = dataStream();
    const writer = new SlowWriter();
    const scanner = fastSink();
    const signer = recordingSigner();
    const intake = new MessageIntake(source, headers(), 10_000_000, { writer, scanner, signer });
    const running = intake.run();
    source.write(Buffer.from(HEADER));
    source.destroy(new Error('socket closed'));
    await assert.rejects(running, /socket closed/);
    assert.equal(scanner.writableEnded, false, 'nothing was ended as if the message were whole');
    assert.equal(signer.ended, false);
  });
});
