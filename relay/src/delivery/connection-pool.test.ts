import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { ConnectionPool, type Poolable } from './connection-pool.ts';

// The pool is pure bookkeeping; plain objects stand in for connections.
class Conn implements Poolable {
  readonly name: string;
  usable = true;
  closed = false;
  constructor(name: string) {
    this.name = name;
  }
  close(): void {
    this.closed = true;
    this.usable = false;
  }
}

function pool(options: Partial<{ maxPerKey: number; maxUses: number; idleTimeoutMs: number }> = {}) {
  return new ConnectionPool<Conn>({ maxPerKey: 2, maxUses: 100, idleTimeoutMs: 5000, ...options });
}

describe('ConnectionPool', () => {
  it('reserves room for new connections up to the limit, then waits for one to come back', async () => {
    const p = pool();
    assert.equal(await p.acquire('a'), 'open');
    assert.equal(await p.acquire('a'), 'open');
    assert.equal(await p.acquire('b'), 'open', 'limits are per key');
    let third: unknown;
    const waiting = p.acquire('a').then((lease) => {
      third = lease;
    });
    await Promise.resolve();
    assert.equal(third, undefined);
    const first = new Conn('first');
    p.release('a', first, true);
    await waiting;
    assert.equal(third, first, 'the waiter gets the connection that came back');
    assert.equal(p.size('a'), 2);
  });

  it('hands out the idle connection for the next job to the same key', async () => {
    const p = pool();
    assert.equal(await p.acquire('a'), 'open');
    const c = new Conn('c');
    p.release('a', c, true);
    assert.equal(await p.acquire('a'), c);
    assert.equal(await p.acquire('a'), 'open');
  });

  it('closes a connection that is not reusable, has failed or has been used maxUses times', async () => {
    const p = pool({ maxUses: 2 });
    const broken = new Conn('broken');
    await p.acquire('a');
    p.release('a', broken, false);
    assert.equal(broken.closed, true);

    const dead = new Conn('dead');
    await p.acquire('a');
    dead.usable = false;
    p.release('a', dead, true);
    assert.equal(dead.closed, true);

    const worn = new Conn('worn');
    await p.acquire('a');
    p.release('a', worn, true);
    assert.equal(await p.acquire('a'), worn);
    p.release('a', worn, true);
    assert.equal(worn.closed, true, 'closed after its second transaction');
    assert.equal(p.size('a'), 0);
  });

  it('skips idle connections that died or do not fit, closing them', async () => {
    const p = pool();
    await p.acquire('a');
    await p.acquire('a');
    const died = new Conn('died');
    const other = new Conn('other-host');
    p.release('a', died, true);
    p.release('a', other, true);
    died.usable = false;
    assert.equal(await p.acquire('a', (c) => c.name !== 'other-host'), 'open');
    assert.equal(other.closed, true);
    assert.equal(p.size('a'), 1);
  });

  it('closes an idle connection after idleTimeoutMs', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const p = pool({ idleTimeoutMs: 3000 });
      await p.acquire('a');
      const c = new Conn('c');
      p.release('a', c, true);
      mock.timers.tick(2999);
      assert.equal(c.closed, false);
      mock.timers.tick(1);
      assert.equal(c.closed, true);
      assert.equal(p.size('a'), 0);
    } finally {
      mock.timers.reset();
    }
  });

  it('gives back a reservation that never became a connection', async () => {
    const p = pool({ maxPerKey: 1 });
    await p.acquire('a');
    const next = p.acquire('a');
    p.discard('a');
    assert.equal(await next, 'open');
  });

  it('on close, ends idle connections, answers waiters and later acquires with closed', async () => {
    const p = pool({ maxPerKey: 1 });
    await p.acquire('a');
    const waiting = p.acquire('a');
    await p.acquire('b');
    const idle = new Conn('idle');
    p.release('b', idle, true);
    p.close();
    assert.equal(idle.closed, true);
    assert.equal(await waiting, 'closed');
    assert.equal(await p.acquire('a'), 'closed');
    const busy = new Conn('busy');
    p.release('a', busy, true);
    assert.equal(busy.closed, true, 'a connection coming back after close is closed');
  });

  it('refuses limits that are not positive integers', () => {
    assert.throws(() => pool({ maxPerKey: 0 }), RangeError);
    assert.throws(() => pool({ maxUses: 1.5 }), RangeError);
  });
});
