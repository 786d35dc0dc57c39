// smtp-server's input parser with a faster DATA phase. In data mode smtp-server looks for
// the end of data (CRLF.CRLF) and for escape dots by testing every byte in a JavaScript
// loop; on 1 MB messages that loop was 15 % of the relay's main thread. This does the same
// with Buffer.indexOf, which jumps straight to the next "\n." (rare outside the end).
// Everything else (the start-of-data rules that stop smuggling by segmentation, the byte
// count, back-pressure, the hand-back to command mode) is smtp-server's code unchanged.
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { LineDots } from './line-dots.ts';

const DOT_CRLF = Buffer.from('.\r\n');
const END_SEQUENCE = Buffer.from('\r\n.\r\n');

type Callback = (err?: Error | null) => void;

export class SluiceParser extends SMTPStream {
  /** smtp-server 3's `_feedDataStream`, with the per-byte seek replaced by indexOf. */
  override _feedDataStream(input: Buffer, done: Callback): void {
    const dataStream = this._dataStream;
    let chunk = input;
    if (this._lastBytes && this._lastBytes.length > 0) {
      chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
      this._lastBytes = false;
    }
    let len = chunk.length;
    // a "." line right at the start ends an empty message; this must test _atDataStart:
    // an escaped ".." first line that arrived alone has already lost its escape dot
    if (this._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(DOT_CRLF)) {
      this._endDataMode(false, chunk.subarray(3), done);
      return;
    }
    if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
      chunk = chunk.subarray(1);
      len--;
      this._atDataStart = false;
    }
    // a dot at the start of a line, at i >= 2 and i < len - 2 as smtp-server checks it
    const dots = new LineDots(chunk);
    for (let at = dots.next(1); at !== -1 && at + 1 < len - 2; at = dots.next(at + 1)) {
      const i = at + 1;
      if (chunk.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
        const buf = chunk.subarray(0, i);
        this._countDataBytes(buf.length);
        this._endDataMode(buf, chunk.subarray(i + 3), done);
        return;
      }
      if (chunk[i + 1] === 0x2e) {
        // an escape dot: emit what comes before it and go on without it
        const buf = chunk.subarray(0, i);
        this._lastBytes = false;
        this._countDataBytes(buf.length);
        if (dataStream?.writable) dataStream.write(buf);
        const rest = chunk.subarray(i + 1);
        setImmediate(() => this._feedDataStream(rest, done));
        return;
      }
    }
    // keep the last bytes: the end sequence may straddle this chunk and the next
    this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
    if (this._lastBytes.length >= chunk.length) {
      done();
      return;
    }
    const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
    this._countDataBytes(buf.length);
    if (!dataStream?.writable) {
      done();
      return;
    }
    if (dataStream.write(buf) || dataStream.destroyed) {
      done();
      return;
    }
    // a stream that the application destroys never drains, it only closes
    const onDrain = (): void => {
      dataStream.removeListener('drain', onDrain);
      dataStream.removeListener('close', onDrain);
      done();
    };
    dataStream.once('drain', onDrain);
    dataStream.once('close', onDrain);
  }
}
