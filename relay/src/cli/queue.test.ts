import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { type QueueAdmin, type QueueListResponse, registerQueueApi } from '../admin/queue-api.ts';
import type { QueuePage } from '../queue/listing.ts';
import type { SpooledEnvelope, SpooledRecipient } from '../spool/envelope.ts';
import { spooledEnvelope } from '../testing/envelope.ts';
import { QUEUE_USAGE, runQueueCli } from './queue.ts';

const TOKEN = 'cli-test-token';
const OLD = '0MCJ5ZQ8WAB12CD34EF';
const BOUNCE = '0MCJ6A000ABCDEF0123';

function envelope(
  queueId: string,
  receivedAt: string,
  recipients: SpooledRecipient[],
  extra: Partial<SpooledEnvelope> = {},
): SpooledEnvelope {
  return spooledEnvelope({ queueId, receivedAt, recipients, size: 2048, ...extra });
}

/**
 * A stand-in for the delivery queue behind a real admin HTTP server, so these tests cover
 * the command line and its HTTP exchange; the real queue has its own tests.
 */
class FakeQueueAdmin implements QueueAdmin {
  messages = new Map<string, SpooledEnvelope>();
  scanning = false;
  retried: (string | undefined)[] = [];

  async list(): Promise<QueuePage> {
    const messages = [...this.messages.values()]
      .sort((a, b) => (a.queueId < b.queueId ? -1 : 1))
      .map((e) => ({ ...e, state: 'deferred' as const }));
    return { messages, total: messages.length, next: null };
  }
  async get(queueId: string): Promise<SpooledEnvelope | undefined> {
    return this.messages.get(queueId);
  }
  retryNow(queueId: string): boolean {
    if (!this.messages.has(queueId)) return false;
    this.retried.push(queueId);
    return true;
  }
  retryCount(): number | undefined {
    this.retried.push(undefined);
    return this.messages.size;
  }
  async remove(queueId: string): Promise<boolean> {
    return this.messages.delete(queueId);
  }
}

type Run = { code: number; stdout: string; stderr: string };

describe('sluice-relay queue', () => {
  const admin = new FakeQueueAdmin();
  let server: FastifyInstance;
  let url: string;

  before(async () => {
    server = Fastify({ logger: false });
    registerQueueApi(server, { admin, token: TOKEN });
    await server.listen({ host: '127.0.0.1', port: 0 });
    const address = server.server.address();
    assert.ok(typeof address === 'object' && address !== null);
    url = `http://127.0.0.1:${address.port}`;
  });
  after(() => server.close());

  beforeEach(() => {
    admin.retried = [];
    admin.messages = new Map([
      [
        OLD,
        envelope(
          OLD,
          '2025-07-01T10:00:00.000Z',
          [
            {
              address: 'bob@example.org',
              state: 'deferred',
              attempts: 3,
              response: '451 4.7.1 greylisted, try again later',
              status: '4.7.1',
              remoteHost: 'mx.example.org',
            },
            {
              address: 'carol@example.net',
              state: 'deferred',
              attempts: 3,
              response: 'connect to mx.example.net: ECONNREFUSED',
            },
            { address: 'dan@example.org', state: 'delivered', attempts: 1, response: '250 2.0.0 ok' },
            { address: 'erin@example.org', state: 'pending' },
          ],
          { attempts: 3, nextAttemptAt: '2025-07-01T10:30:00.000Z' },
        ),
      ],
      [
        BOUNCE,
        envelope(BOUNCE, '2025-07-02T09:05:07.000Z', [{ address: 'alice@example.com', state: 'pending' }], {
          sender: '',
          size: 3000,
        }),
      ],
    ]);
  });

  async function run(args: string[], overrides: { token?: string; url?: string } = {}): Promise<Run> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
    });
    const code = await runQueueCli(args, {
      stdout,
      stderr,
      url: overrides.url ?? url,
      token: overrides.token ?? TOKEN,
    });
    return { code, stdout: out, stderr: err };
  }

  it('list prints a postqueue -p style table', async () => {
    const result = await run(['list']);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 0);
    const pad = ' '.repeat(50);
    assert.equal(
      result.stdout,
      [
        '-Queue ID---------- --Size-- ----Arrival Time---- -Sender/Recipient-------',
        '0MCJ5ZQ8WAB12CD34EF     2048 Tue Jul  1 10:00:00  alice@example.com',
        `${pad}bob@example.org  deferred (host mx.example.org said: 451 4.7.1 greylisted, try again later)`,
        `${pad}carol@example.net  deferred (connect to mx.example.net: ECONNREFUSED)`,
        `${pad}dan@example.org  delivered (250 2.0.0 ok)`,
        `${pad}erin@example.org  pending`,
        '',
        '0MCJ6A000ABCDEF0123     3000 Wed Jul  2 09:05:07  MAILER-DAEMON',
        `${pad}alice@example.com  pending`,
        '',
        '-- 5 Kbytes in 2 requests.',
        '',
      ].join('\n'),
    );
  });

  it('list says so when the queue is empty, and --json gives the API answer', async () => {
    const json = await run(['list', '--json']);
    assert.equal(json.code, 0);
    const body = JSON.parse(json.stdout) as QueueListResponse;
    assert.equal(body.total, 2);
    assert.deepEqual(
      body.messages.map((m) => m.queueId),
      [OLD, BOUNCE],
    );

    admin.messages.clear();
    const empty = await run(['list']);
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, 'Mail queue is empty\n');
  });

  it('show prints one message in detail, and takes a lower-case id', async () => {
    const result = await run(['show', OLD.toLowerCase()]);
    assert.equal(result.code, 0);
    assert.equal(
      result.stdout,
      [
        'Queue ID:     0MCJ5ZQ8WAB12CD34EF',
        'Arrival:      2025-07-01T10:00:00.000Z',
        'Sender:       alice@example.com',
        'User:         alice',
        'Size:         2048 bytes',
        'Attempts:     3',
        'Next attempt: 2025-07-01T10:30:00.000Z',
        'Recipients:',
        '  bob@example.org: deferred, 3 attempts, status 4.7.1',
        '    (host mx.example.org said: 451 4.7.1 greylisted, try again later)',
        '  carol@example.net: deferred, 3 attempts',
        '    (connect to mx.example.net: ECONNREFUSED)',
        '  dan@example.org: delivered, 1 attempt',
        '    (250 2.0.0 ok)',
        '  erin@example.org: pending',
        '',
      ].join('\n'),
    );
  });

  it('flush and retry schedule attempts now; delete removes a message', async () => {
    const flush = await run(['flush']);
    assert.equal(flush.code, 0);
    assert.equal(flush.stdout, 'Scheduled 2 messages for immediate delivery.\n');

    const retry = await run(['retry', OLD]);
    assert.equal(retry.code, 0);
    assert.equal(retry.stdout, `${OLD}: scheduled for immediate delivery\n`);
    assert.deepEqual(admin.retried, [undefined, OLD]);

    const removed = await run(['delete', BOUNCE]);
    assert.equal(removed.code, 0);
    assert.equal(removed.stdout, `${BOUNCE}: deleted\n`);
    assert.deepEqual([...admin.messages.keys()], [OLD]);
  });

  it('exits 1 with the API error for an unknown message', async () => {
    for (const command of ['show', 'retry', 'delete']) {
      const result = await run([command, '0MCJ5ZQ8WAAAAAAAAAA']);
      assert.equal(result.code, 1, command);
      assert.equal(result.stdout, '');
      assert.equal(result.stderr, 'queue: 0MCJ5ZQ8WAAAAAAAAAA: not found (HTTP 404)\n');
    }
  });

  it('exits 1 when the token is refused or the server cannot be reached', async () => {
    const refused = await run(['list'], { token: 'wrong' });
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'queue: the admin API refused the token (401 unauthorized)\n');

    // A port that was just listening and is now closed.
    const gone = Fastify({ logger: false });
    await gone.listen({ host: '127.0.0.1', port: 0 });
    const address = gone.server.address();
    await gone.close();
    assert.ok(typeof address === 'object' && address !== null);
    const unreachable = await run(['list'], { url: `http://127.0.0.1:${address.port}/` });
    assert.equal(unreachable.code, 1);
    assert.match(
      unreachable.stderr,
      /^queue: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+\/: .*ECONNREFUSED/,
    );
  });

  it('keeps control characters from remote answers off the terminal', async () => {
    admin.messages.set(
      OLD,
      envelope(OLD, '2025-07-01T10:00:00.000Z', [
        {
          address: 'bob@example.org',
          state: 'deferred',
          response: '451 \u001b[2J\u001b]0;owned\u0007 wait\r\n',
        },
      ]),
    );
    const result = await run(['show', OLD]);
    assert.equal(result.code, 0);
    assert.doesNotMatch(result.stdout.replaceAll('\n', ''), /\p{Cc}/u);
    assert.match(result.stdout, /\(451 +\[2J \]0;owned +wait\)/);
  });

  it('prints help, and exits 2 on usage errors without calling the API', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.equal(help.stdout, QUEUE_USAGE);

    const usage: [string[], string][] = [
      [[], 'no command given'],
      [['purge'], 'unknown command "purge"'],
      [['show'], 'show takes one queue id'],
      [['retry', OLD, BOUNCE], 'retry takes one queue id'],
      [['flush', OLD], 'flush takes no arguments'],
      [['delete', '../../etc/passwd'], '"../../etc/passwd" is not a queue id'],
      [['list', '--verbose'], "Unknown option '--verbose'"],
    ];
    for (const [args, message] of usage) {
      const result = await run(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.ok(result.stderr.startsWith('queue: '), result.stderr);
      assert.ok(result.stderr.includes(message), `${result.stderr} should say ${message}`);
      assert.ok(result.stderr.includes(QUEUE_USAGE));
    }
    const noToken = await run(['list'], { token: '' });
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /token is not set/);
    assert.equal(admin.messages.size, 2);
    assert.deepEqual(admin.retried, []);
  });
});
