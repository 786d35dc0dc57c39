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
                     last answer (like postqueue -p); times are UTC
  show <queue-id>    one message in detail
  flush              attempt delivery of every queued message now (postqueue -f)
  retry <queue-id>   attempt delivery of one message now (postqueue -i)
  delete <queue-id>  delete a message without notifying anyone (postsuper -d)

Options:
  --json             print the API's JSON answer instead of text
  -h, --help         show this help
`;

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
  try {
    const parsed = parseArgs({
      args,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
    if (parsed.values.help === true) {
      await write(io.stdout, QUEUE_USAGE);
      return EXIT_OK;
    }
    json = parsed.values.json === true;
    positionals = parsed.positionals;
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
  if (io.url === '') return usageError(io, 'the admin API URL is not set');
  if (io.token === '') return usageError(io, 'the queue API token is not set');

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
      return isList(body) ? renderList(body) : undefined;
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

function renderList(list: QueueListResponse): string {
  if (list.messages.length === 0) return 'Mail queue is empty\n';
  const lines = [
    `${'-Queue ID-'.padEnd(ID_WIDTH, '-')} --Size-- ----Arrival Time---- -Sender/Recipient-------`,
  ];
  let bytes = 0;
  for (const message of list.messages) {
    bytes += message.size;
    lines.push(
      `${message.queueId.padEnd(ID_WIDTH)} ${String(message.size).padStart(SIZE_WIDTH)} ` +
        `${postfixTime(message.receivedAt).padEnd(ARRIVAL_WIDTH)} ${sender(message)}`,
    );
    for (const recipient of message.recipients) {
      const answer = lastAnswer(recipient);
      lines.push(
        `${INDENT}${printable(recipient.address)}  ${recipient.state}${answer === '' ? '' : ` (${answer})`}`,
      );
    }
    lines.push('');
  }
  const count = list.messages.length;
  lines.push(`-- ${Math.ceil(bytes / 1024)} Kbytes in ${count} ${count === 1 ? 'request' : 'requests'}.`);
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
