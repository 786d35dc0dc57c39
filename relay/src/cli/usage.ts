// `sluice-relay usage`: each user's usage per hour or per day, as a table, CSV or JSON,
// from the admin server's usage API. The entry point supplies the API's URL and token;
// this file never reads the environment.
import { parseArgs } from 'node:util';
import type { UsageResponse } from '../admin/usage-api.ts';
import type { UsageReportRow } from '../usage/report.ts';
import { type AdminCliIo, adminRequest, field, printable, write } from './admin-request.ts';

export const USAGE_CLI_USAGE = `Usage: sluice-relay usage [--user USER] [--period hour|day] [--from TIME] [--to TIME] [--csv | --json]

Shows each user's usage per hour or per day, through the admin server's usage API:
accepted messages, their recipients and bytes, refused transactions, AUTH logins,
distinct client IPs, and every refusal by reason. Any relay of a policy answers for all
of them when they share Redis.

Options:
  --user USER         one user only
  --period hour|day   one row per user and hour (default) or per user and day
  --from TIME         first bucket; TIME is UTC: 2025-07-01T10:00:00Z, 2025-07-01 or
  --to TIME           2025-07-01T10 (default: the last 24 hours, or the last 7 days)
  --csv               comma-separated values with a header line (one column per reason;
                      with deliveries, one per result and per result and reply class)
  --json              the API's JSON answer
  -h, --help          show this help
`;

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

/** Runs the command; resolves to the process exit code (0 ok, 1 API error, 2 usage). */
export async function runUsageCli(args: string[], io: AdminCliIo): Promise<number> {
  let values: {
    user?: string;
    period?: string;
    from?: string;
    to?: string;
    csv?: boolean;
    json?: boolean;
    help?: boolean;
  };
  try {
    const parsed = parseArgs({
      args,
      options: {
        user: { type: 'string' },
        period: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        csv: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values;
  } catch (err: unknown) {
    // parseArgs throws a TypeError for unknown options and stray arguments.
    if (err instanceof TypeError) return usageError(io, err.message);
    throw err;
  }
  if (values.help === true) {
    await write(io.stdout, USAGE_CLI_USAGE);
    return EXIT_OK;
  }
  if (values.period !== undefined && values.period !== 'hour' && values.period !== 'day') {
    return usageError(io, `--period must be hour or day, not "${printable(values.period)}"`);
  }
  if (values.csv === true && values.json === true)
    return usageError(io, '--csv and --json exclude each other');
  if (io.url === '') return usageError(io, 'the admin API URL is not set');
  if (io.token === '') return usageError(io, 'the admin API token is not set');

  const query = new URLSearchParams();
  for (const key of ['user', 'period', 'from', 'to'] as const) {
    const value = values[key];
    if (value !== undefined) query.set(key, value);
  }
  const result = await adminRequest(io, 'GET', `usage${query.size > 0 ? `?${query}` : ''}`);
  if (!result.ok) {
    await write(io.stderr, `usage: ${result.message}\n`);
    return EXIT_ERROR;
  }
  if (values.json === true) {
    await write(io.stdout, `${JSON.stringify(result.body, null, 2)}\n`);
    return EXIT_OK;
  }
  if (!isResponse(result.body)) {
    await write(io.stderr, 'usage: the admin API gave an answer this command does not understand\n');
    return EXIT_ERROR;
  }
  await write(io.stdout, values.csv === true ? usageCsv(result.body.rows) : usageTable(result.body));
  return EXIT_OK;
}

async function usageError(io: AdminCliIo, message: string): Promise<number> {
  await write(io.stderr, `usage: ${message}\n\n${USAGE_CLI_USAGE}`);
  return EXIT_USAGE;
}

function isRow(value: unknown): value is UsageReportRow {
  return (
    typeof field(value, 'user') === 'string' &&
    typeof field(value, 'start') === 'string' &&
    typeof field(value, 'messages') === 'number' &&
    typeof field(value, 'rejections') === 'object'
  );
}

function isResponse(value: unknown): value is UsageResponse {
  const rows = field(value, 'rows');
  return Array.isArray(rows) && rows.every(isRow) && typeof field(value, 'period') === 'string';
}

/** "2025-07-01 10:00" for an hour, "2025-07-01" for a day. */
function bucketLabel(row: UsageReportRow): string {
  return row.period === 'hour'
    ? `${row.start.slice(0, 10)} ${row.start.slice(11, 16)}`
    : row.start.slice(0, 10);
}

function refusals(row: UsageReportRow): string {
  const parts = Object.entries(row.rejections).map(([reason, n]) => `${printable(reason)}=${n}`);
  return parts.length > 0 ? parts.join(' ') : '-';
}

/** A fixed-width table with a totals line, for a terminal. */
export function usageTable(response: UsageResponse): string {
  const { rows } = response;
  const span = `${response.period}s from ${response.from} to ${response.to}`;
  if (rows.length === 0) return `No usage in the ${span}.\n`;
  const header = [
    'PERIOD START',
    'USER',
    'MESSAGES',
    'RECIPIENTS',
    'BYTES',
    'REJECTED',
    'AUTHS',
    'IPS',
    'REFUSALS',
  ];
  const body = rows.map((r) => [
    bucketLabel(r),
    printable(r.user),
    String(r.messages),
    String(r.recipients),
    String(r.bytes),
    String(r.rejected),
    String(r.authentications),
    String(r.distinctClientIps),
    refusals(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] ?? '').length)));
  const numeric = new Set([2, 3, 4, 5, 6, 7]);
  const line = (cells: string[]) =>
    cells
      .map((c, i) =>
        i === cells.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd();
  const sum = (pick: (r: UsageReportRow) => number) => rows.reduce((n, r) => n + pick(r), 0);
  const users = new Set(rows.map((r) => r.user)).size;
  const totals =
    `-- ${rows.length} ${rows.length === 1 ? 'row' : 'rows'}, ${users} ${users === 1 ? 'user' : 'users'}: ` +
    `${sum((r) => r.messages)} messages, ${sum((r) => r.recipients)} recipients, ` +
    `${sum((r) => r.bytes)} bytes, ${sum((r) => r.rejected)} rejected`;
  return `${[line(header), ...body.map(line), totals].join('\n')}\n`;
}

const CSV_COLUMNS = [
  'period',
  'start',
  'user',
  'messages',
  'recipients',
  'bytes',
  'rejected',
  'authentications',
  'distinct_client_ips',
] as const;

const RESULTS = ['delivered', 'deferred', 'bounced'] as const;

/**
 * RFC 4180 CSV, one column per refusal reason that occurs, for spreadsheets; when any row
 * has deliveries, a column per delivery result and per result and reply class that occurs.
 */
export function usageCsv(rows: readonly UsageReportRow[]): string {
  const reasons = [...new Set(rows.flatMap((r) => Object.keys(r.rejections)))].sort();
  const delivered = rows.some((r) => r.deliveries !== undefined);
  const classes = [
    ...new Set(
      rows.flatMap((r) =>
        RESULTS.flatMap((result) =>
          Object.keys(r.deliveries?.[result].classes ?? {}).map((c) => `${result}:${c}`),
        ),
      ),
    ),
  ].sort();
  const deliveryColumns = delivered ? [...RESULTS, ...classes.map((c) => c.replace(':', '_'))] : [];
  const header = [...CSV_COLUMNS, ...reasons.map((r) => `rejected_${r}`), ...deliveryColumns];
  const lines = rows.map((r) =>
    [
      r.period,
      r.start,
      // a spreadsheet runs a cell that starts with = + - @ as a formula
      /^[=+\-@]/.test(r.user) ? `'${r.user}` : r.user,
      r.messages,
      r.recipients,
      r.bytes,
      r.rejected,
      r.authentications,
      r.distinctClientIps,
      ...reasons.map((reason) => r.rejections[reason] ?? 0),
      ...(delivered ? RESULTS.map((result) => r.deliveries?.[result].total ?? 0) : []),
      ...classes.map((key) => {
        const [result, cls] = key.split(':') as [(typeof RESULTS)[number], string];
        return r.deliveries?.[result].classes[cls] ?? 0;
      }),
    ]
      .map(csvCell)
      .join(','),
  );
  return `${[header.map(csvCell).join(','), ...lines].join('\r\n')}\r\n`;
}

function csvCell(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
