// `sluice-relay queue`: what `postqueue -p`, `postqueue -f`, `postqueue -i` and
// `postsuper -d` give Postfix users, over the admin server's queue API. The entry point
// supplies the API's URL and token; this file never reads the environment.
import { parseArgs } from 'node:util';
import type { QueueListResponse, QueueMessageView, QueueRecipientView } from '../admin/queue-api.ts';
import { QUEUE_ID_PATTERN } from '../spool/queue-id.ts';
import { type AdminCliIo, adminRequest, field, printable, write } from './admin-request.ts';

export type QueueCliIo = AdminCliIo;

export const QUEUE_USAGE = `Usage: sluice-relay queue <command> [--json]

Shows and manages the delivery queue through the admin server's queue API.

Commands:
  list               the queue, oldest first, with each recipient's state and
                     last answer (like postqueue -p); times are UTC. Fetched a
                     page at a time; these narrow it down:
                       --sender ADDRESS|@DOMAIN  --domain RECIPIENT-DOMAIN
                       --state active|due|deferred
                       --older-than AGE  --newer-than AGE  (AGE: 90s, 30m, 2h, 1d)
                       --limit N (stop after N messages)  --page-size N (1-1000)
  show <queue-id>    one message in detail
  flush              attempt delivery of every queued message now (postqueue -f)
  retry <queue-id>   attempt delivery of one message now (postqueue -i)
  delete <queue-id>  delete a message without notifying anyone (postsuper -d)

Options:
  --json             print the API's JSON answer instead of text
  -h, --help         show this help
`;

const LIST_OPTIONS = ['sender', 'domain', 'state', 'older-than', 'newer-than', 'limit', 'page-size'] as const;
type ListOption = (typeof LIST_OPTIONS)[number];

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

type Command = 'list' | 'show' | 'flush' | 'retry' | 'delete';
const TAKES_ID: Readonly<Record<Command, boolean>> = {
  list: false,
  show: true,
  flush: false,
  retry: true,
  delete: true,
};

/** Runs the command; resolves to the process exit code (0 ok, 1 API error, 2 usage). */
export async function runQueueCli(args: string[], io: QueueCliIo): Promise<number> {
  let json = false;
  let positionals: string[];
  let listOptions: Partial<Record<ListOption, string>>;
  try {
    const parsed = parseArgs({
      args,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(LIST_OPTIONS.map((name) => [name, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: true,
    });
    if (parsed.values.help === true) {
      await write(io.stdout, QUEUE_USAGE);
      return EXIT_OK;
    }
    json = parsed.values.json === true;
    positionals = parsed.positionals;
    listOptions = Object.fromEntries(
      LIST_OPTIONS.flatMap((name) => {
        const value = (parsed.values as Record<string, unknown>)[name];
        return typeof value === 'string' ? [[name, value]] : [];
      }),
    );
  } catch (err: unknown) {
    // parseArgs throws a TypeError for unknown options.
    if (err instanceof TypeError) return usageError(io, err.message);
    throw err;
  }

  const [name, ...operands] = positionals;
  if (name === undefined) return usageError(io, 'no command given');
  if (!isCommand(name)) return usageError(io, `unknown command "${name}"`);
  const wanted = TAKES_ID[name] ? 1 : 0;
  if (operands.length !== wanted) {
    return usageError(io, wanted === 1 ? `${name} takes one queue id` : `${name} takes no arguments`);
  }
  // Queue ids are upper case; accept what a user retypes from a log in lower case.
  const queueId = operands[0]?.toUpperCase() ?? '';
  if (wanted === 1 && !QUEUE_ID_PATTERN.test(queueId)) {
    return usageError(io, `"${printable(operands[0] ?? '')}" is not a queue id`);
  }
  if (name !== 'list' && Object.keys(listOptions).length > 0) {
    return usageError(io, `${name} takes no --${Object.keys(listOptions)[0]}`);
  }
  const listing = name === 'list' ? listRequest(listOptions) : undefined;
  if (typeof listing === 'string') return usageError(io, listing);
  if (io.url === '') return usageError(io, 'the admin API URL is not set');
  if (io.token === '') return usageError(io, 'the queue API token is not set');
  if (listing !== undefined) return list(io, listing, json);

  const { method, path } = route(name, queueId);
  const result = await adminRequest(io, method, path);
  if (!result.ok) {
    await write(io.stderr, `queue: ${result.message}\n`);
    return EXIT_ERROR;
  }
  if (json) {
    await write(io.stdout, `${JSON.stringify(result.body, null, 2)}\n`);
    return EXIT_OK;
  }

  const text = render(name, queueId, result.body);
  if (text === undefined) {
    await write(io.stderr, 'queue: the admin API gave an answer this command does not understand\n');
    return EXIT_ERROR;
  }
  await write(io.stdout, text);
  return EXIT_OK;
}

/** The listing's query string (without the cursor) and how many messages to show at most. */
function listRequest(
  options: Partial<Record<ListOption, string>>,
): { query: URLSearchParams; limit: number } | string {
  const query = new URLSearchParams();
  if (options.sender !== undefined) query.set('sender', options.sender);
  if (options.domain !== undefined) query.set('domain', options.domain);
  if (options.state !== undefined) query.set('state', options.state);
  for (const [option, param] of [
    ['older-than', 'olderThan'],
    ['newer-than', 'newerThan'],
  ] as const) {
    const value = options[option];
    if (value === undefined) continue;
    const seconds = ageSeconds(value);
    if (seconds === undefined) return `--${option} takes an age such as 90s, 30m, 2h or 1d`;
    query.set(param, String(seconds));
  }
  const pageSize = options['page-size'] ?? '100';
  if (!/^\d+$/.test(pageSize) || Number(pageSize) < 1 || Number(pageSize) > 1000) {
    return '--page-size takes a number from 1 to 1000';
  }
  query.set('limit', pageSize);
  const limit = options.limit ?? String(Number.MAX_SAFE_INTEGER);
  if (!/^\d+$/.test(limit) || Number(limit) < 1) return '--limit takes a number of 1 or more';
  return { query, limit: Number(limit) };
}

/** "90s", "30m", "2h", "1d" or plain seconds, as seconds. */
function ageSeconds(text: string): number | undefined {
  const match = /^(\d+)([smhd]?)$/.exec(text);
  if (!match) return undefined;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

/** Fetches the listing page by page (following the cursor) and prints it as it comes. */
async function list(
  io: QueueCliIo,
  request: { query: URLSearchParams; limit: number },
  json: boolean,
): Promise<number> {
  const shown: QueueMessageView[] = [];
  let total = 0;
  let bytes = 0;
  let count = 0;
  let cursor: string | null = '';
  while (cursor !== null && count < request.limit) {
    const query = new URLSearchParams(request.query);
    if (cursor !== '') query.set('cursor', cursor);
    const result = await adminRequest(io, 'GET', `queue?${query}`);
    if (!result.ok) {
      await write(io.stderr, `queue: ${result.message}\n`);
      return EXIT_ERROR;
    }
    if (!isList(result.body)) {
      await write(io.stderr, 'queue: the admin API gave an answer this command does not understand\n');
      return EXIT_ERROR;
    }
    const page = result.body;
    total = page.total;
    const messages = page.messages.slice(0, request.limit - count);
    if (json) shown.push(...messages);
    else {
      if (count === 0 && messages.length > 0) await write(io.stdout, `${LIST_HEADER}\n`);
      if (messages.length > 0) await write(io.stdout, messages.map(renderListed).join(''));
    }
    for (const message of messages) bytes += message.size;
    count += messages.length;
    cursor = typeof page.next === 'string' ? page.next : null;
  }
  if (json) {
    await write(io.stdout, `${JSON.stringify({ messages: shown, total }, null, 2)}\n`);
  } else if (count === 0) {
    await write(io.stdout, total === 0 ? 'Mail queue is empty\n' : 'No message in the queue matches\n');
  } else {
    await write(
      io.stdout,
      `-- ${Math.ceil(bytes / 1024)} Kbytes in ${count} ${count === 1 ? 'request' : 'requests'}.\n`,
    );
  }
  return EXIT_OK;
}

function route(command: Command, queueId: string): { method: string; path: string } {
  switch (command) {
    case 'list':
      return { method: 'GET', path: 'queue' };
    case 'show':
      return { method: 'GET', path: `queue/${queueId}` };
    case 'flush':
      return { method: 'POST', path: 'queue/retry' };
    case 'retry':
      return { method: 'POST', path: `queue/${queueId}/retry` };
    case 'delete':
      return { method: 'DELETE', path: `queue/${queueId}` };
  }
}

function isCommand(name: string): name is Command {
  return Object.hasOwn(TAKES_ID, name);
}

async function usageError(io: QueueCliIo, message: string): Promise<number> {
  await write(io.stderr, `queue: ${message}\n\n${QUEUE_USAGE}`);
  return EXIT_USAGE;
}

/** The text for a successful answer, or undefined when it does not have the expected shape. */
function render(command: Command, queueId: string, body: unknown): string | undefined {
  switch (command) {
    case 'list':
      return undefined; // list() prints as the pages come
    case 'show':
      return isMessage(body) ? renderMessage(body) : undefined;
    case 'flush': {
      const scheduled = field(body, 'scheduled');
      if (typeof scheduled !== 'number') return undefined;
      return `Scheduled ${scheduled} ${scheduled === 1 ? 'message' : 'messages'} for immediate delivery.\n`;
    }
    case 'retry':
      return `${queueId}: scheduled for immediate delivery\n`;
    case 'delete':
      return `${queueId}: deleted\n`;
  }
}

function isMessage(value: unknown): value is QueueMessageView {
  return (
    typeof field(value, 'queueId') === 'string' &&
    typeof field(value, 'size') === 'number' &&
    Array.isArray(field(value, 'recipients'))
  );
}

function isList(value: unknown): value is QueueListResponse {
  const messages = field(value, 'messages');
  return Array.isArray(messages) && messages.every(isMessage);
}

// Postfix's layout: id, size, arrival, sender; recipients below, under the sender.
const ID_WIDTH = 19;
const SIZE_WIDTH = 8;
const ARRIVAL_WIDTH = 20;
const INDENT = ' '.repeat(ID_WIDTH + 1 + SIZE_WIDTH + 1 + ARRIVAL_WIDTH + 1);

const LIST_HEADER = `${'-Queue ID-'.padEnd(ID_WIDTH, '-')} --Size-- ----Arrival Time---- -Sender/Recipient-------`;

/** One message of the listing, with its recipients below and a blank line after. */
function renderListed(message: QueueMessageView): string {
  const lines = [
    `${message.queueId.padEnd(ID_WIDTH)} ${String(message.size).padStart(SIZE_WIDTH)} ` +
      `${postfixTime(message.receivedAt).padEnd(ARRIVAL_WIDTH)} ${sender(message)}`,
  ];
  for (const recipient of message.recipients) {
    const answer = lastAnswer(recipient);
    lines.push(
      `${INDENT}${printable(recipient.address)}  ${recipient.state}${answer === '' ? '' : ` (${answer})`}`,
    );
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}

function renderMessage(message: QueueMessageView): string {
  const lines = [
    `Queue ID:     ${message.queueId}`,
    `Arrival:      ${printable(message.receivedAt)}`,
    `Sender:       ${sender(message)}`,
    `User:         ${printable(message.user)}`,
    `Size:         ${message.size} bytes`,
    `Attempts:     ${message.attempts}`,
    `Next attempt: ${message.nextAttemptAt === null ? 'now' : printable(message.nextAttemptAt)}`,
    'Recipients:',
  ];
  for (const recipient of message.recipients) {
    const details: string[] = [recipient.state];
    if (recipient.attempts !== undefined) {
      details.push(`${recipient.attempts} ${recipient.attempts === 1 ? 'attempt' : 'attempts'}`);
    }
    if (recipient.status !== undefined) details.push(`status ${printable(recipient.status)}`);
    lines.push(`  ${printable(recipient.address)}: ${details.join(', ')}`);
    const answer = lastAnswer(recipient);
    if (answer !== '') lines.push(`    (${answer})`);
  }
  return `${lines.join('\n')}\n`;
}

function sender(message: QueueMessageView): string {
  return message.sender === '' ? 'MAILER-DAEMON' : printable(message.sender);
}

/** Postfix's wording: "host mx.example.org said: 451 ..." for a remote answer. */
function lastAnswer(recipient: QueueRecipientView): string {
  if (recipient.response === undefined || recipient.response === '') return '';
  const response = printable(recipient.response);
  return recipient.remoteHost === undefined || !/^[2-5]\d\d/.test(response)
    ? response
    : `host ${printable(recipient.remoteHost)} said: ${response}`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Tue Jul  1 10:00:00", as postqueue prints it (in UTC here). */
function postfixTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '?';
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${DAYS[date.getUTCDay()] ?? ''} ${MONTHS[date.getUTCMonth()] ?? ''} ${String(date.getUTCDate()).padStart(2)} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}`
  );
}
