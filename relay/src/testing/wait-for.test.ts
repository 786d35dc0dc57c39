import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from './wait-for.ts';

describe('waitFor', () => {
  it('returns the first value that is neither undefined nor false', async () => {
    let calls = 0;
    const got = await waitFor('the third call', () => (++calls === 3 ? { calls } : undefined));
    assert.deepEqual(got, { calls: 3 });
  });

  it('takes a check that throws as "not yet"', async () => {
    let calls = 0;
    const got = await waitFor('the server to answer', async () => {
      if (++calls < 3) throw new Error('ECONNREFUSED');
      return 'pong';
    });
    assert.equal(got, 'pong');
  });

  it('names what it waited for and what the last check returned', async () => {
    await assert.rejects(
      waitFor('the queue to drain', () => false, { timeoutMs: 0 }),
      {
        message: 'timed out after 0 ms waiting for the queue to drain (the last check returned false)',
      },
    );
  });

  it('shows the last error a check threw, and the detail', async () => {
    await assert.rejects(
      waitFor(
        'the policy to be Ready',
        () => {
          throw new Error('relaypolicies "main" not found');
        },
        { timeoutMs: 0, detail: () => 'operator log: …' },
      ),
      {
        message:
          'timed out after 0 ms waiting for the policy to be Ready (the last check threw Error: relaypolicies "main" not found)\noperator log: …',
      },
    );
  });
});
