// swaks, the SMTP test tool a person at a terminal uses, run against a relay pod.
import { execFile } from 'node:child_process';

const SWAKS = '/usr/bin/swaks';

export interface SwaksResult {
  /** swaks' exit status: 0 when the whole transaction succeeded. */
  exitCode: number;
  transcript: string;
  /** The server's last reply line before QUIT, e.g. "250 2.0.0 Ok: queued as ...". */
  lastReply: string;
}

/** Runs swaks with the arguments (e.g. --server, --tls, --auth ...) and returns its transcript. */
export function swaks(args: readonly string[]): Promise<SwaksResult> {
  return new Promise((resolve, reject) => {
    execFile(SWAKS, [...args], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const exitCode = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && exitCode === -1) {
        reject(new Error(`swaks failed to run: ${err.message}\n${stderr}`, { cause: err }));
        return;
      }
      const transcript = `${stdout}${stderr}`;
      // server lines are prefixed "<-" (or "<~" inside TLS); QUIT's 221 is not the answer wanted
      const replies = transcript
        .split('\n')
        .filter((l) => /^<[-~*]+\s+\d{3}[ -]/.test(l))
        .map((l) => l.replace(/^<[-~*]+\s+/, ''))
        .filter((l) => !l.startsWith('221'));
      resolve({ exitCode, transcript, lastReply: replies.at(-1) ?? '' });
    });
  });
}
