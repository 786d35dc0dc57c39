// `sluice-relay queue`: what `postqueue -p`, `postqueue -f`, `postqueue -i`,
// `postsuper -d`, `postsuper -h` and `postsuper -H` give Postfix users, over the admin
// server's queue API. The entry point supplies the API's URL and token; this file never
// reads the environment. Given several relays (the pods of a policy, found by a caller
// that knows the cluster) it asks each one: listings are merged oldest first with the
// relay's name on each message, bulk counts are summed.
import { parseArgs } from 'node:util';
import { BULK_ACTIONS, type QueueMessageView } from '../admin/queue-api.ts';
import { QUEUE_ID_PATTERN } from '../spool/queue-id.ts';
import { type AdminCliIo, type ApiResult, adminRequest, field, printable, write } from './admin-request.ts';
import { isList, isMessage, listHeader, renderListed, renderMessage } from './queue-render.ts';

/** One relay's admin API. */
export interface QueueTarget {
  /** Shown on each message and count when there are several (the pod name). */
  name: string;
  url: string;
  token: string;
  /** How to reach it (through the Kubernetes API server's pod proxy, say); the global fetch by default. */
  fetch?: typeof fetch;
}

export type QueueCliIo = AdminCliIo & {
  /** Every relay to ask; when given, url, token and fetch are not used. */
  targets?: QueueTarget[];
  /** The command's name in messages and help ("sluice-relay queue" by default). */
  program?: string;
};

const FILTER_HELP = `--sender ADDRESS|@DOMAIN  --domain RECIPIENT-DOMAIN
                       --state active|due|deferred|held
                       --older-than AGE  --newer-than AGE  (AGE: 90s, 30m, 2h, 1d)`;

export function queueUsage(program = 'sluice-relay queue'): string {
  return `Usage: ${program} <command> [--json]

Shows and manages the delivery queue through the admin server's queue API.

Commands:
  list               the queue, oldest first, with each recipient's state and
                     last answer (like postqueue -p; * after the id: being
                     delivered, ! held); times are UTC. Fetched a page at a
                     time; these narrow it down (FILTERS):
                       ${FILTER_HELP}
                       --limit N (stop after N messages)  --page-size N (1-1000)
  show <queue-id>    one message in detail
  flush [FILTERS]    attempt delivery of every queued message (or those the
                     filters select) now (postqueue -f); held ones stay held
  retry <queue-id>   attempt delivery of one message now (postqueue -i)
  hold <queue-id> | FILTERS | --all
                     put messages on hold (postsuper -h): never attempted,
                     across restarts too, until released
  release <queue-id> | FILTERS | --all
                     release held messages, due now (postsuper -H)
  delete <queue-id> | FILTERS | --all
                     delete messages without notifying anyone (postsuper -d)

With FILTERS or --all the command acts on every message selected and prints
how many it acted on.

Options:
  --json             print the API's JSON answer instead of text
  -h, --help         show this help
`;
}

export const QUEUE_USAGE = queueUsage();

const FILTER_OPTIONS = ['sender', 'domain', 'state', 'older-than', 'newer-than'] as const;
const LIST_OPTIONS = [...FILTER_OPTIONS, 'limit', 'page-size'] as const;
type ListOption = (typeof LIST_OPTIONS)[number];

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

type Command = 'list' | 'show' | 'flush' | 'retry' | 'delete' | 'hold' | 'release';
/** How a command is given its messages: none, one id, or an id or a selection (filters, --all). */
const OPERAND: Readonly<Record<Command, 'none' | 'id' | 'selection'>> = {
  list: 'none',
  show: 'id',
  flush: 'none',
  retry: 'id',
  delete: 'selection',
  hold: 'selection',
  release: 'selection',
};

/** Runs the command; resolves to the process exit code (0 ok, 1 API error, 2 usage). */
export async function runQueueCli(args: string[], io: QueueCliIo): Promise<number> {
  const usage = queueUsage(io.program);
  let json = false;
  let all = false;
  let positionals: string[];
  let options: Partial<Record<ListOption, string>>;
  try {
    const parsed = parseArgs({
      args,
      options: {
        json: { type: 'boolean' },
        all: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(LIST_OPTIONS.map((name) => [name, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: true,
    });
    if (parsed.values.help === true) {
      await write(io.stdout, usage);
      return EXIT_OK;
    }
    json = parsed.values.json === true;
    all = parsed.values.all === true;
    positionals = parsed.positionals;
    options = Object.fromEntries(
      LIST_OPTIONS.flatMap((name) => {
        const value = (parsed.values as Record<string, unknown>)[name];
        return typeof value === 'string' ? [[name, value]] : [];
      }),
    );
  } catch (err: unknown) {
    // parseArgs throws a TypeError for unknown options.
    if (err instanceof TypeError) return usageError(io, err.message, usage);
    throw err;
  }

  const [name, ...operands] = positionals;
  if (name === undefined) return usageError(io, 'no command given', usage);
  if (!isCommand(name)) return usageError(io, `unknown command "${name}"`, usage);
  const operand = OPERAND[name];
  const given = Object.keys(options) as ListOption[];
  const filters = given.filter((o) => (FILTER_OPTIONS as readonly string[]).includes(o));
  const selects = filters.length > 0 || all;
  if (operand === 'id' || (operand === 'selection' && !selects)) {
    if (operands.length !== 1) {
      return usageError(
        io,
        operand === 'id' ? `${name} takes one queue id` : `${name} takes one queue id, filters or --all`,
        usage,
      );
    }
  } else if (operands.length !== 0) {
    return usageError(
      io,
      operand === 'selection'
        ? `${name} takes a queue id or filters, not both`
        : `${name} takes no arguments`,
      usage,
    );
  }
  // Queue ids are upper case; accept what a user retypes from a log in lower case.
  const queueId = operands[0]?.toUpperCase() ?? '';
  if (operands.length === 1 && !QUEUE_ID_PATTERN.test(queueId)) {
    return usageError(io, `"${printable(operands[0] ?? '')}" is not a queue id`, usage);
  }
  const takesFilters = name === 'list' || name === 'flush' || operand === 'selection';
  const misplaced = given.find((o) => !takesFilters || (name !== 'list' && !filters.includes(o)));
  if (misplaced !== undefined) return usageError(io, `${name} takes no --${misplaced}`, usage);
  if (all && (operand !== 'selection' || filters.length > 0))
    return usageError(io, `${name} takes no --all${filters.length > 0 ? ' with filters' : ''}`, usage);
  const query = filterQuery(options);
  if (typeof query === 'string') return usageError(io, query, usage);

  const targets: QueueTarget[] = io.targets ?? [
    { name: '', url: io.url, token: io.token, ...(io.fetch ? { fetch: io.fetch } : {}) },
  ];
  if (targets.length === 0) {
    await write(io.stderr, 'queue: no relay to ask\n');
    return EXIT_ERROR;
  }
  for (const target of targets) {
    if (target.url === '') return usageError(io, 'the admin API URL is not set', usage);
    if (target.token === '') return usageError(io, 'the queue API token is not set', usage);
  }
  const named = io.targets !== undefined;

  if (name === 'list') {
    const limits = listLimits(options);
    if (typeof limits === 'string') return usageError(io, limits, usage);
    return list(io, targets, named, query, limits, json);
  }
  if (name === 'flush' || (operand === 'selection' && operands.length === 0)) {
    const action = name === 'flush' ? 'retry' : (name as 'hold' | 'release' | 'delete');
    if (all) query.set('all', 'true');
    return bulk(io, targets, named, action, query, json);
  }
  return single(io, targets, named, name, queueId, json);
}

/** The filters as the API's query string, or what is wrong with them. */
function filterQuery(options: Partial<Record<ListOption, string>>): URLSearchParams | string {
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
  return query;
}

/** The listing's page size and how many messages to show at most. */
function listLimits(
  options: Partial<Record<ListOption, string>>,
): { pageSize: string; limit: number } | string {
  const pageSize = options['page-size'] ?? '100';
  if (!/^\d+$/.test(pageSize) || Number(pageSize) < 1 || Number(pageSize) > 1000) {
    return '--page-size takes a number from 1 to 1000';
  }
  const limit = options.limit ?? String(Number.MAX_SAFE_INTEGER);
  if (!/^\d+$/.test(limit) || Number(limit) < 1) return '--limit takes a number of 1 or more';
  return { pageSize, limit: Number(limit) };
}

/** "90s", "30m", "2h", "1d" or plain seconds, as seconds. */
function ageSeconds(text: string): number | undefined {
  const match = /^(\d+)([smhd]?)$/.exec(text);
  if (!match) return undefined;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

function request(target: QueueTarget, method: string, path: string): Promise<ApiResult> {
  return adminRequest(
    {
      url: target.url,
      token: target.token,
      stdout: process.stdout,
      stderr: process.stderr,
      ...(target.fetch ? { fetch: target.fetch } : {}),
    },
    method,
    path,
  );
}

/** An error of one relay, named when there are several. */
async function failed(io: QueueCliIo, target: QueueTarget, named: boolean, message: string): Promise<void> {
  await write(io.stderr, `queue: ${named ? `${printable(target.name)}: ` : ''}${message}\n`);
}

type Listed = QueueMessageView & { pod?: string };

/** One relay's listing, page by page (following the cursor); an error ends it. */
async function* pages(
  target: QueueTarget,
  query: URLSearchParams,
  pageSize: string,
  totals: Map<QueueTarget, number>,
): AsyncGenerator<QueueMessageView[], void, void> {
  for (let cursor: string | null = ''; cursor !== null; ) {
    const q = new URLSearchParams(query);
    q.set('limit', pageSize);
    if (cursor !== '') q.set('cursor', cursor);
    const result = await request(target, 'GET', `queue?${q}`);
    if (!result.ok) throw new TargetError(result.message);
    if (!isList(result.body))
      throw new TargetError('the admin API gave an answer this command does not understand');
    totals.set(target, result.body.total);
    cursor = typeof result.body.next === 'string' ? result.body.next : null;
    yield result.body.messages;
  }
}

class TargetError extends Error {}

/**
 * The listing of every relay, merged oldest first (queue ids sort by arrival), printed as
 * it comes: each relay is read a page at a time, never all of it at once.
 */
async function list(
  io: QueueCliIo,
  targets: QueueTarget[],
  named: boolean,
  query: URLSearchParams,
  limits: { pageSize: string; limit: number },
  json: boolean,
): Promise<number> {
  const totals = new Map<QueueTarget, number>();
  const streams = targets.map((target) => ({
    target,
    pages: pages(target, query, limits.pageSize, totals),
    buffer: [] as QueueMessageView[],
    done: false,
  }));
  let code = EXIT_OK;
  /** Refills a relay's buffer from its next page; a relay that fails is reported and left out. */
  const fill = async (s: (typeof streams)[number]) => {
    while (!s.done && s.buffer.length === 0) {
      try {
        const next = await s.pages.next();
        if (next.done) s.done = true;
        else s.buffer.push(...next.value);
      } catch (err: unknown) {
        s.done = true;
        code = EXIT_ERROR;
        await failed(io, s.target, named, err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(streams.map(fill));
  const width = Math.max(5, ...targets.map((t) => printable(t.name).length));
  const shown: Listed[] = [];
  let bytes = 0;
  let count = 0;
  while (count < limits.limit) {
    let first: (typeof streams)[number] | undefined;
    for (const s of streams) {
      const head = s.buffer[0];
      if (
        head !== undefined &&
        (first === undefined || head.queueId < (first.buffer[0] as QueueMessageView).queueId)
      )
        first = s;
    }
    if (first === undefined) break;
    const message = first.buffer.shift() as QueueMessageView;
    if (json) shown.push(named ? { ...message, pod: first.target.name } : message);
    else {
      if (count === 0) await write(io.stdout, `${listHeader(named ? width : 0)}\n`);
      await write(io.stdout, renderListed(message, named ? { name: first.target.name, width } : undefined));
    }
    bytes += message.size;
    count++;
    await fill(first);
  }
  for (const s of streams) await s.pages.return();
  const total = [...totals.values()].reduce((a, b) => a + b, 0);
  if (json) {
    await write(io.stdout, `${JSON.stringify({ messages: shown, total }, null, 2)}\n`);
  } else if (count === 0) {
    if (code === EXIT_OK || totals.size > 0)
      await write(io.stdout, total === 0 ? 'Mail queue is empty\n' : 'No message in the queue matches\n');
  } else {
    await write(
      io.stdout,
      `-- ${Math.ceil(bytes / 1024)} Kbytes in ${count} ${count === 1 ? 'request' : 'requests'}.\n`,
    );
  }
  return code;
}

const BULK_PATHS = {
  retry: 'queue/retry',
  hold: 'queue/hold',
  release: 'queue/release',
  delete: 'queue/delete',
};
const BULK_VERBS = { retry: 'Scheduled', hold: 'Held', release: 'Released', delete: 'Deleted' };

/** A bulk action on every relay; prints the sum of what they acted on (and each relay's share). */
async function bulk(
  io: QueueCliIo,
  targets: QueueTarget[],
  named: boolean,
  action: keyof typeof BULK_ACTIONS,
  query: URLSearchParams,
  json: boolean,
): Promise<number> {
  const key = BULK_ACTIONS[action];
  const path = query.size > 0 ? `${BULK_PATHS[action]}?${query}` : BULK_PATHS[action];
  const results = await Promise.all(targets.map((t) => request(t, 'POST', path)));
  let code = EXIT_OK;
  const counts: Array<[string, number]> = [];
  for (const [i, result] of results.entries()) {
    const target = targets[i] as QueueTarget;
    const count = result.ok ? field(result.body, key) : undefined;
    if (!result.ok || typeof count !== 'number') {
      code = EXIT_ERROR;
      await failed(
        io,
        target,
        named,
        result.ok ? 'the admin API gave an answer this command does not understand' : result.message,
      );
      continue;
    }
    counts.push([target.name, count]);
  }
  if (counts.length === 0) return code;
  const sum = counts.reduce((a, [, n]) => a + n, 0);
  if (json) {
    const body: Record<string, unknown> = { [key]: sum };
    if (named) body.pods = Object.fromEntries(counts);
    await write(io.stdout, `${JSON.stringify(body, null, 2)}\n`);
    return code;
  }
  const each = named ? ` (${counts.map(([n, c]) => `${printable(n)}: ${c}`).join(', ')})` : '';
  const what = `${sum} ${sum === 1 ? 'message' : 'messages'}`;
  await write(
    io.stdout,
    action === 'retry'
      ? `Scheduled ${what} for immediate delivery${each}.\n`
      : `${BULK_VERBS[action]} ${what}${each}.\n`,
  );
  return code;
}

/** A command on one message: asked of every relay; the one that has it answers. */
async function single(
  io: QueueCliIo,
  targets: QueueTarget[],
  named: boolean,
  command: Exclude<Command, 'list' | 'flush'>,
  queueId: string,
  json: boolean,
): Promise<number> {
  const { method, path } = route(command, queueId);
  const results = await Promise.all(targets.map((t) => request(t, method, path)));
  const found = results.flatMap((r, i) =>
    r.ok ? [{ target: targets[i] as QueueTarget, body: r.body }] : [],
  );
  // a message lives on one relay: "not found" from the others is no error
  const errors = results.flatMap((r, i) =>
    !r.ok && (targets.length === 1 || !/ \(HTTP 404\)$/.test(r.message))
      ? [{ target: targets[i] as QueueTarget, message: r.message }]
      : [],
  );
  for (const e of errors) await failed(io, e.target, named, e.message);
  if (found.length === 0 && errors.length === 0) {
    await write(io.stderr, `queue: ${queueId}: not found on any relay\n`);
    return EXIT_ERROR;
  }
  for (const { target, body } of found) {
    if (json) {
      await write(
        io.stdout,
        `${JSON.stringify(named ? { pod: target.name, ...(body as object) } : body, null, 2)}\n`,
      );
      continue;
    }
    const text = render(command, queueId, body);
    if (text === undefined) {
      await failed(io, target, named, 'the admin API gave an answer this command does not understand');
      return EXIT_ERROR;
    }
    await write(
      io.stdout,
      named
        ? `${command === 'show' ? `Pod:          ${printable(target.name)}\n` : `${printable(target.name)}: `}${text}`
        : text,
    );
  }
  return errors.length > 0 ? EXIT_ERROR : EXIT_OK;
}

function route(
  command: Exclude<Command, 'list' | 'flush'>,
  queueId: string,
): { method: string; path: string } {
  switch (command) {
    case 'show':
      return { method: 'GET', path: `queue/${queueId}` };
    case 'retry':
      return { method: 'POST', path: `queue/${queueId}/retry` };
    case 'hold':
      return { method: 'POST', path: `queue/${queueId}/hold` };
    case 'release':
      return { method: 'POST', path: `queue/${queueId}/release` };
    case 'delete':
      return { method: 'DELETE', path: `queue/${queueId}` };
  }
}

function isCommand(name: string): name is Command {
  return Object.hasOwn(OPERAND, name);
}

async function usageError(io: QueueCliIo, message: string, usage: string): Promise<number> {
  await write(io.stderr, `queue: ${message}\n\n${usage}`);
  return EXIT_USAGE;
}

/** The text for a successful answer, or undefined when it does not have the expected shape. */
function render(
  command: Exclude<Command, 'list' | 'flush'>,
  queueId: string,
  body: unknown,
): string | undefined {
  switch (command) {
    case 'show':
      return isMessage(body) ? renderMessage(body) : undefined;
    case 'retry':
      return `${queueId}: scheduled for immediate delivery\n`;
    case 'hold':
      return `${queueId}: placed on hold\n`;
    case 'release':
      return `${queueId}: released from hold\n`;
    case 'delete':
      return `${queueId}: deleted\n`;
  }
}
