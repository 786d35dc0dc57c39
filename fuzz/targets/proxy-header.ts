// The PROXY protocol header reader (relay/src/smtp/proxy-protocol.ts) on any bytes a load
// balancer, or anyone reaching a trusted listener, could send first. Checks: it settles
// (the stream ends, so it must), it rejects only with SLUICE_ERR_PROXY_HEADER, what it
// accepts is well formed, the bytes after the header are handed back untouched, and the
// answer does not depend on how the bytes were split into reads.
import { isIP, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isSluiceError } from '../../relay/src/errors.ts';
import { type ProxyInfo, readProxyHeader } from '../../relay/src/smtp/proxy-protocol.ts';
import type { FuzzTarget } from '../engine/fuzz-loop.ts';
import type { SliceProbe } from '../engine/slice-probe.ts';
import { CheckFailed, check, checkSame, pieces } from './check.ts';

type Outcome = { info: ProxyInfo; rest: string } | { rejected: true };

async function read(chunks: readonly Buffer[], input: Buffer, probe: SliceProbe): Promise<Outcome> {
  const stream = new PassThrough();
  let outcome: Outcome | null = null;
  let failure: unknown = null;
  // a PassThrough has every method of a socket that the reader uses (read, unshift, events)
  const reading = readProxyHeader(stream as unknown as Socket, { timeoutMs: 60_000 }).then(
    (info) => {
      outcome = { info, rest: '' };
    },
    (err: unknown) => {
      if (isSluiceError(err, 'SLUICE_ERR_PROXY_HEADER')) outcome = { rejected: true };
      else failure = err;
    },
  );
  // the rest keeps coming after the header, as the SMTP session's bytes would
  for (const chunk of chunks) await probe.slice(() => stream.write(chunk));
  stream.end();
  await reading;
  if (failure !== null)
    throw new CheckFailed(`rejected with something else than SLUICE_ERR_PROXY_HEADER: ${String(failure)}`);
  const result = outcome as Outcome | null;
  check(result !== null, 'readProxyHeader did not settle after the stream ended');
  if ('rejected' in result) return result;
  await nextTurn();
  const rest: Buffer[] = [];
  for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null)
    rest.push(chunk);
  const restBytes = Buffer.concat(rest);
  check(restBytes.length < input.length, 'accepted a header of no bytes');
  check(
    restBytes.equals(input.subarray(input.length - restBytes.length)),
    'the bytes after the header were not handed back as sent',
  );
  checkInfo(result.info, input.subarray(0, input.length - restBytes.length));
  return { info: result.info, rest: restBytes.toString('latin1') };
}

function checkInfo(info: ProxyInfo, header: Buffer): void {
  check(info.version === 1 || info.version === 2, `version ${String(info.version)}`);
  if (info.version === 1)
    check(header.subarray(-2).toString('latin1') === '\r\n', 'a v1 header not ending in CRLF');
  if (info.kind === 'local') return;
  check(info.kind === 'proxied', `kind ${String((info as { kind: unknown }).kind)}`);
  for (const address of [info.remoteAddress, info.localAddress]) {
    check(isIP(address) !== 0, `accepted address ${JSON.stringify(address)}`);
  }
  for (const port of [info.remotePort, info.localPort]) {
    check(Number.isInteger(port) && port >= 0 && port <= 65535, `accepted port ${port}`);
  }
}

export const target: FuzzTarget = {
  name: 'proxy-header',
  maxLength: 512,
  dictionary: [
    'PROXY ',
    'TCP4 ',
    'TCP6 ',
    'UNKNOWN',
    '\r\n',
    ' 65535',
    '::ffff:',
    '127.0.0.1',
    '::1',
    'fe80::1%eth0',
    Buffer.from('0d0a0d0a000d0a515549540a', 'hex'),
    Buffer.from([0x21, 0x11]),
    Buffer.from([0x21, 0x21]),
    Buffer.from([0x20, 0x00]),
    Buffer.from([0x21, 0x12]),
    Buffer.from([0x21, 0x31]),
    Buffer.from([0x00, 0x0c]),
    Buffer.from([0x00, 0x24]),
  ],
  async run(input, probe) {
    const whole = await read([input], input, probe);
    const split = await read(pieces(input, 3), input, probe);
    checkSame(whole, split, 'the header read whole and in three pieces gave different answers');
  },
};
