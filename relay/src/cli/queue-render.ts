// How `queue` prints the queue API's answers: Postfix's `postqueue -p` layout for the
// listing (id, size, arrival, sender; recipients below; `*` after the id of a message being
// attempted, `!` after a held one), and a detailed view of one message. Across several
// relays (a policy's pods) each listed message starts with the relay's name.
import type { QueueListResponse, QueueMessageView, QueueRecipientView } from '../admin/queue-api.ts';
import { field, printable } from './admin-request.ts';

export function isMessage(value: unknown): value is QueueMessageView {
  return (
    typeof field(value, 'queueId') === 'string' &&
    typeof field(value, 'size') === 'number' &&
    Array.isArray(field(value, 'recipients'))
  );
}

export function isList(value: unknown): value is QueueListResponse {
  const messages = field(value, 'messages');
  return Array.isArray(messages) && messages.every(isMessage);
}

// Postfix's layout: id, size, arrival, sender; recipients below, under the sender.
const ID_WIDTH = 19;
const SIZE_WIDTH = 8;
const ARRIVAL_WIDTH = 20;
const INDENT_WIDTH = ID_WIDTH + 1 + SIZE_WIDTH + 1 + ARRIVAL_WIDTH + 1;

/** The listing's header; podWidth > 0 adds a column for the relay's name in front. */
export function listHeader(podWidth = 0): string {
  const pod = podWidth > 0 ? `${'-Pod-'.padEnd(podWidth, '-')} ` : '';
  return `${pod}${'-Queue ID-'.padEnd(ID_WIDTH, '-')} --Size-- ----Arrival Time---- -Sender/Recipient-------`;
}

/** Postfix marks a message being delivered with `*` and a held one with `!` after its id. */
function marked(message: QueueMessageView): string {
  const mark = message.state === 'active' ? '*' : message.state === 'held' ? '!' : '';
  return `${message.queueId}${mark}`;
}

/** One message of the listing, with its recipients below and a blank line after. */
export function renderListed(message: QueueMessageView, pod?: { name: string; width: number }): string {
  const front = pod ? `${printable(pod.name).padEnd(pod.width)} ` : '';
  const indent = ' '.repeat(INDENT_WIDTH + front.length);
  const lines = [
    `${front}${marked(message).padEnd(ID_WIDTH)} ${String(message.size).padStart(SIZE_WIDTH)} ` +
      `${postfixTime(message.receivedAt).padEnd(ARRIVAL_WIDTH)} ${sender(message)}`,
  ];
  for (const recipient of message.recipients) {
    const answer = lastAnswer(recipient);
    lines.push(
      `${indent}${printable(recipient.address)}  ${recipient.state}${answer === '' ? '' : ` (${answer})`}`,
    );
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}

export function renderMessage(message: QueueMessageView): string {
  const lines = [
    `Queue ID:     ${message.queueId}`,
    ...(message.state === 'held' ? ['State:        held (release it to deliver)'] : []),
    `Arrival:      ${printable(message.receivedAt)}`,
    `Sender:       ${sender(message)}`,
    `User:         ${printable(message.user)}`,
    `Size:         ${message.size} bytes`,
    `Attempts:     ${message.attempts}`,
    `Next attempt: ${message.state === 'held' ? 'none while held' : message.nextAttemptAt === null ? 'now' : printable(message.nextAttemptAt)}`,
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
