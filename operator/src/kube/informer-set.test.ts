import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNamespaces } from './informer-set.ts';

describe('WATCH_NAMESPACE', () => {
  it('is a comma-separated list of namespaces, all of them when empty', () => {
    assert.deepEqual(parseNamespaces('a,b'), ['a', 'b']);
    assert.deepEqual(parseNamespaces(' a , b,,a '), ['a', 'b']);
    assert.deepEqual(parseNamespaces('mail'), ['mail']);
    assert.deepEqual(parseNamespaces(''), []);
    assert.deepEqual(parseNamespaces(undefined), []);
  });
});
