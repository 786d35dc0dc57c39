// `sluice-relay suppression`: the recipients the relay refuses because mail to them
// bounced, from the admin server's suppression API; and lifting one. The entry point
// supplies the API's URL and token; this file never reads the environment.
import type { SuppressionsResponse } from '../admin/suppression-api.ts';
import type { Suppression } from '../suppression/suppression-list.ts';
import { type AdminCliIo, adminRequest, printable, write } from './admin-request.ts';

export const SUPPRESSION_CLI_USAGE = `Usage: sluice-relay suppression list [--json]
       sluice-relay suppression show ADDRESS
       sluice-relay suppression remove ADDRESS

Recipients whose mail bounced (as invalid, by default) are refused at RCPT with
550 5.1.1 for suppression.ttlSeconds. list shows them with the bounce that put them
there; remove lifts one, so the next mail to it is accepted and tried again.
`;

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

/** Runs the command; resolves to the process exit code (0 ok, 1 API error, 2 usage). */
export async function runSuppressionCli(args: string[], io: AdminCliIo): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === '-h' || command === '--help') {
    await write(command === undefined ? io.stderr : io.stdout, SUPPRESSION_CLI_USAGE);
    return command === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (io.url === '') return usageError(io, 'the admin API URL is not set');
  if (io.token === '') return usageError(io, 'the admin API token is not set');
  if (command === 'list') {
    const json = rest.length === 1 && rest[0] === '--json';
    if (rest.length > 0 && !json) return usageError(io, `unexpected argument ${printable(rest[0] ?? '')}`);
    const result = await adminRequest(io, 'GET', 'suppressions');
    if (!result.ok) return apiError(io, result.message);
    const { suppressions } = result.body as SuppressionsResponse;
    if (json) {
      await write(io.stdout, `${JSON.stringify(result.body, null, 2)}\n`);
      return EXIT_OK;
    }
    const lines = suppressions.map(line);
    await write(io.stdout, `${[...lines, `${suppressions.length} suppressed`].join('\n')}\n`);
    return EXIT_OK;
  }
  if (command !== 'show' && command !== 'remove')
    return usageError(io, `unknown command ${printable(command)}`);
  const [address, ...extra] = rest;
  if (address === undefined || address === '' || extra.length > 0) {
    return usageError(io, `${command} takes one address`);
  }
  const path = `suppressions/${encodeURIComponent(address)}`;
  const result = await adminRequest(io, command === 'show' ? 'GET' : 'DELETE', path);
  if (!result.ok) return apiError(io, `${printable(address)}: ${result.message}`);
  const text =
    command === 'show' ? line(result.body as Suppression) : `${printable(address)}: suppression removed`;
  await write(io.stdout, `${text}\n`);
  return EXIT_OK;
}

function line(s: Suppression): string {
  return [s.address, s.class, `since ${s.since}`, `until ${s.until}`, `user ${s.user}`, s.reply]
    .map((v) => printable(String(v)))
    .join('  ');
}

async function usageError(io: AdminCliIo, message: string): Promise<number> {
  await write(io.stderr, `sluice-relay suppression: ${message}\n\n${SUPPRESSION_CLI_USAGE}`);
  return EXIT_USAGE;
}

async function apiError(io: AdminCliIo, message: string): Promise<number> {
  await write(io.stderr, `sluice-relay suppression: ${message}\n`);
  return EXIT_ERROR;
}
