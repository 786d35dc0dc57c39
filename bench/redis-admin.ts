// Two Redis commands the harness needs, over a raw RESP connection: FLUSHALL (a cold
// cache) and INFO commandstats (the server's own count of script calls, to set beside the
// relay's sluice_state_operations_total).
import net from 'node:net';

function command(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let reply = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('redis timeout')));
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      // +OK / -ERR, or a bulk string $len\r\n…\r\n
      const bulk = /^\$(\d+)\r\n/.exec(reply);
      if (
        reply.startsWith('+') ||
        reply.startsWith('-') ||
        (bulk && reply.length >= bulk[0].length + Number(bulk[1]) + 2)
      ) {
        socket.end();
        resolve(bulk ? reply.slice(bulk[0].length, bulk[0].length + Number(bulk[1])) : reply.trim());
      }
    });
  });
}

export async function flushAll(port: number): Promise<void> {
  const reply = await command(port, ['FLUSHALL']);
  if (reply !== '+OK') throw new Error(`FLUSHALL: ${reply}`);
}

/** Calls per command since the server started (or the last CONFIG RESETSTAT). */
export async function commandCalls(port: number): Promise<Map<string, number>> {
  const info = await command(port, ['INFO', 'commandstats']);
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    calls.set(match[1] ?? '', Number(match[2]));
  return calls;
}

/**
 * Script invocations (EVAL, EVALSHA, FCALL) between two commandCalls() snapshots. Redis
 * also counts the commands a script runs inside itself, so these, not the total, are the
 * round trips a client made (Sluice sends every state update as one script).
 */
export function scriptCallsBetween(before: Map<string, number>, after: Map<string, number>): number {
  let total = 0;
  for (const [name, n] of after) {
    if (!/^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/.test(name)) continue;
    total += n - (before.get(name) ?? 0);
  }
  return total;
}
