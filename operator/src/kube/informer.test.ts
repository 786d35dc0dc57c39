// The informer against a scripted list/watch source. A real API server cannot be made to
// stall a watch silently or to expire a resourceVersion on cue, so these cases use a
// stand-in; operator/test/controller.test.ts runs the informers against a real kube-apiserver.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from '@sluice/relay/testing/wait-for';
import type { KubeObject } from './client.ts';
import { Informer, type ListWatch } from './informer.ts';

function obj(name: string, rv: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'ns', resourceVersion: rv } };
}

class Source implements ListWatch<KubeObject> {
  items = new Map<string, KubeObject>();
  rv = 1;
  lists = 0;
  watches: string[] = [];
  failWatches = 0;
  #active: { onEvent: (t: string, o: unknown) => void; onDone: (err?: unknown) => void } | undefined;

  put(name: string): KubeObject {
    const o = obj(name, String(++this.rv));
    this.items.set(name, o);
    return o;
  }

  async list(onItem: (item: KubeObject) => void) {
    this.lists++;
    for (const item of this.items.values()) onItem(item);
    return { resourceVersion: String(this.rv) };
  }

  async watch(
    resourceVersion: string,
    onEvent: (t: string, o: unknown) => void,
    onDone: (err?: unknown) => void,
  ) {
    this.watches.push(resourceVersion);
    if (this.failWatches > 0) {
      this.failWatches--;
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    }
    const me = { onEvent, onDone };
    this.#active = me;
    return {
      abort: () => {
        if (this.#active === me) this.#active = undefined;
      },
    };
  }

  get watching(): boolean {
    return this.#active !== undefined;
  }

  send(type: string, o: unknown): void {
    this.#active?.onEvent(type, o);
  }

  end(err?: unknown): void {
    const a = this.#active;
    this.#active = undefined;
    a?.onDone(err);
  }
}

function recorder(informer: Informer<KubeObject>) {
  const seen: string[] = [];
  informer.on({
    add: (o) => seen.push(`add ${o.metadata.name}`),
    update: (o, old) =>
      seen.push(`update ${o.metadata.name} ${old.metadata.resourceVersion}->${o.metadata.resourceVersion}`),
    delete: (o) => seen.push(`delete ${o.metadata.name}`),
  });
  return seen;
}

describe('informer', () => {
  it('lists, then keeps its cache and handlers current from the watch', async () => {
    const src = new Source();
    src.put('a');
    const informer = new Informer({ listWatch: src });
    const seen = recorder(informer);
    informer.start();
    await informer.synced();
    assert.equal(informer.hasSynced(), true);
    await waitFor('watch', () => src.watching);
    assert.deepEqual(src.watches, ['2'], 'watches from the list resourceVersion');
    src.send('ADDED', src.put('b'));
    const b2 = src.put('b');
    src.send('MODIFIED', b2);
    src.send('DELETED', src.items.get('a'));
    assert.deepEqual(seen, ['add a', 'add b', 'update b 3->4', 'delete a']);
    assert.deepEqual(
      informer.list().map((o) => o.metadata.name),
      ['b'],
    );
    assert.equal(informer.get('ns', 'b')?.metadata.resourceVersion, '4');
    await informer.stop();
  });

  it('restarts a watch that ends from the last resourceVersion, without a relist', async () => {
    const src = new Source();
    const informer = new Informer({ listWatch: src });
    informer.start();
    await waitFor('watch', () => src.watching);
    src.send('ADDED', src.put('a'));
    src.send('BOOKMARK', { metadata: { resourceVersion: '7' } });
    src.end();
    await waitFor('second watch', () => src.watches.length === 2 && src.watching);
    assert.deepEqual(src.watches, ['1', '7']);
    assert.equal(src.lists, 1);
    await informer.stop();
  });

  it('relists on 410 Gone and reports what changed meanwhile', async () => {
    const src = new Source();
    src.put('a');
    src.put('b');
    const informer = new Informer({ listWatch: src });
    const seen = recorder(informer);
    informer.start();
    await waitFor('watch', () => src.watching);
    src.items.delete('a');
    src.put('c');
    src.send('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
    await waitFor('relist', () => src.lists === 2 && src.watching);
    assert.deepEqual(seen, ['add a', 'add b', 'delete a', 'add c']);
    assert.equal(informer.relists, 2);
    await informer.stop();
  });

  it('relists when a watch delivers nothing for stallMs, and not while bookmarks arrive', async () => {
    const src = new Source();
    const informer = new Informer({ listWatch: src, stallMs: 150 });
    informer.start();
    await waitFor('watch', () => src.watching);
    // bookmarks every 50 ms keep a quiet watch alive
    for (let i = 0; i < 8; i++) {
      src.send('BOOKMARK', { metadata: { resourceVersion: String(src.rv) } });
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(src.lists, 1, 'no relist while bookmarks arrive');
    // then silence: the stall detector aborts the watch and relists
    await waitFor('relist after a stall', () => src.lists === 2);
    await waitFor('new watch', () => src.watching);
    await informer.stop();
  });

  it('retries a failing watch with backoff and resumes', async () => {
    const src = new Source();
    src.failWatches = 3;
    const warnings: string[] = [];
    const informer = new Informer({
      listWatch: src,
      backoffMs: { initial: 10, max: 40 },
      log: { warn: (_d, m) => warnings.push(m) },
    });
    informer.start();
    await waitFor('watch after failures', () => src.watching);
    assert.equal(src.watches.length, 4);
    assert.equal(warnings.filter((w) => w === 'watch failed').length, 3);
    src.send('ADDED', src.put('a'));
    assert.ok(informer.get('ns', 'a'));
    await informer.stop();
  });
});
